//! The deterministic generator of the synthetic workloads.

use xbzrle_testkit::Rng;

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast and good enough for test data and
/// simulation; the same seed always gives the same sequence. The 64-bit steps are the test
/// kit's (`xbzrle_testkit::Rng`); this adds the draws the workloads use.
#[derive(Debug, Clone)]
pub struct SplitMix64(Rng);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(Rng::new(seed))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift (bias below `n / 2^64`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Fills `bytes` with random bytes.
    pub fn fill(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}
