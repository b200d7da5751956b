//! The bookkeeping of a test double of guest memory that changes while it is read: which
//! bytes were read how often, and what their first read returned. A sender or kernel that
//! reads each byte once must leave every count at exactly one, and everything it sends or
//! caches must be the returned values.

/// How often each byte of a page was read, and what its first read returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadLog {
    reads: Vec<u32>,
    returned: Vec<u8>,
}

impl ReadLog {
    /// A log for a page whose content is `initial` (what an unread byte reports as returned).
    pub fn new(initial: &[u8]) -> Self {
        Self {
            reads: vec![0; initial.len()],
            returned: initial.to_vec(),
        }
    }

    /// Records that the bytes `bytes` were read from offset `at`.
    ///
    /// # Panics
    /// If they reach past the page.
    pub fn record(&mut self, at: usize, bytes: &[u8]) {
        for (i, &byte) in (at..).zip(bytes) {
            self.reads[i] += 1;
            if self.reads[i] == 1 {
                self.returned[i] = byte;
            }
        }
    }

    /// The first byte not read exactly once, and how often it was read.
    pub fn not_read_once(&self) -> Option<(usize, u32)> {
        self.reads
            .iter()
            .position(|&n| n != 1)
            .map(|i| (i, self.reads[i]))
    }

    /// The value each byte's first read returned (the initial value of a byte never read).
    pub fn returned(&self) -> &[u8] {
        &self.returned
    }

    /// [`ReadLog::returned`], by value.
    pub fn into_returned(self) -> Vec<u8> {
        self.returned
    }
}

#[cfg(test)]
mod tests {
    use super::ReadLog;

    #[test]
    fn the_first_read_of_each_byte_is_kept_and_every_read_counted() {
        let mut log = ReadLog::new(&[1, 2, 3, 4]);
        assert_eq!(log.not_read_once(), Some((0, 0)));
        log.record(0, &[9, 8]);
        log.record(1, &[7, 6, 5]);
        assert_eq!(log.not_read_once(), Some((1, 2)));
        assert_eq!(log.returned(), [9, 8, 6, 5]);
        let mut once = ReadLog::new(&[0; 3]);
        once.record(0, &[1, 2, 3]);
        assert_eq!(once.not_read_once(), None);
        assert_eq!(once.into_returned(), [1, 2, 3]);
    }
}
