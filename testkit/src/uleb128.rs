//! ULEB128 lengths: 7 bits per byte, lowest group first, the high bit set on every byte but
//! the last.

/// Appends `value` in minimal ULEB128.
pub fn push(out: &mut Vec<u8>, value: usize) {
    push_padded(out, value, 0);
}

/// Appends `value` in ULEB128 with `extra` redundant zero groups (a non-minimal encoding,
/// such as `80 00` for 0, which QEMU's decoder accepts).
pub fn push_padded(out: &mut Vec<u8>, value: usize, extra: usize) {
    let mut groups = Vec::new();
    let mut rest = value;
    loop {
        groups.push((rest & 0x7f) as u8);
        rest >>= 7;
        if rest == 0 {
            break;
        }
    }
    groups.resize(groups.len() + extra, 0);
    let last = groups.len() - 1;
    out.extend(
        groups
            .iter()
            .enumerate()
            .map(|(k, &group)| if k < last { group | 0x80 } else { group }),
    );
}

/// Bytes `value` takes in minimal ULEB128.
pub fn size(value: usize) -> usize {
    let mut out = Vec::new();
    push(&mut out, value);
    out.len()
}

/// Why [`read`] found no length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// The bytes end before the length's last byte.
    Truncated,
    /// The first `max_bytes` bytes all have the continuation bit set.
    TooLong,
}

/// Reads one ULEB128 value of at most `max_bytes` bytes (at most 9) from the start of
/// `bytes`: its value and its size in bytes.
///
/// # Panics
/// If `max_bytes` is above 9 (the value would not fit in `u64`).
#[inline]
pub fn read(bytes: &[u8], max_bytes: usize) -> Result<(u64, usize), ReadError> {
    assert!(max_bytes <= 9, "at most 9 ULEB128 bytes fit in u64");
    let mut value = 0u64;
    for k in 0..max_bytes {
        let Some(&byte) = bytes.get(k) else {
            return Err(ReadError::Truncated);
        };
        value |= u64::from(byte & 0x7f) << (7 * k);
        if byte & 0x80 == 0 {
            return Ok((value, k + 1));
        }
    }
    Err(ReadError::TooLong)
}

/// Reads one length of a delta with full ULEB128 (at most 5 bytes, the value fitting in
/// `u32`): its value and size, or `None` when it is truncated, longer or too large.
#[inline]
pub fn read_u32_len(bytes: &[u8]) -> Option<(usize, usize)> {
    let (value, size) = read(bytes, 5).ok()?;
    let value = usize::try_from(u32::try_from(value).ok()?).ok()?;
    Some((value, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Worked by hand from the definition.
    #[test]
    fn encodings_of_known_values() {
        let cases: &[(usize, &[u8])] = &[
            (0, &[0x00]),
            (1, &[0x01]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (16383, &[0xff, 0x7f]),
            (16384, &[0x80, 0x80, 0x01]),
            (u32::MAX as usize, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ];
        for &(value, bytes) in cases {
            let mut out = Vec::new();
            push(&mut out, value);
            assert_eq!(out, bytes, "{value}");
            assert_eq!(size(value), bytes.len(), "{value}");
            assert_eq!(read(bytes, 9), Ok((value as u64, bytes.len())), "{value}");
            assert_eq!(read_u32_len(bytes), Some((value, bytes.len())), "{value}");
        }
    }

    #[test]
    fn padded_encodings() {
        let mut out = Vec::new();
        push_padded(&mut out, 0, 1);
        push_padded(&mut out, 5, 2);
        push_padded(&mut out, 128, 1);
        assert_eq!(out, [0x80, 0x00, 0x85, 0x80, 0x00, 0x80, 0x81, 0x00]);
        assert_eq!(read(&out, 2), Ok((0, 2)));
        assert_eq!(read(&out[2..], 3), Ok((5, 3)));
        assert_eq!(read(&out[5..], 3), Ok((128, 3)));
    }

    #[test]
    fn rejected_reads() {
        assert_eq!(read(&[], 2), Err(ReadError::Truncated));
        assert_eq!(read(&[0x80], 2), Err(ReadError::Truncated));
        assert_eq!(read(&[0x80, 0x80, 0x00], 2), Err(ReadError::TooLong));
        assert_eq!(read(&[0x00], 0), Err(ReadError::TooLong));
        // Five bytes, but above u32::MAX; six bytes.
        assert_eq!(read_u32_len(&[0x80, 0x80, 0x80, 0x80, 0x10]), None);
        assert_eq!(read_u32_len(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00]), None);
        assert_eq!(read_u32_len(&[0x80]), None);
    }
}
