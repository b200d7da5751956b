//! Every kernel the CPU supports against the independent canonical oracle and against the
//! reference kernel: `encode` and `encode_update` (result, bytes, cached page afterwards),
//! on structured and random page pairs, at every alignment, many lengths and every
//! capacity around the canonical length, with guard bytes around every buffer.
//!
//! A kernel this CPU cannot run is reported on stderr and not tested here (the aarch64
//! script runs the NEON kernel under qemu-user).

mod common;

use common::{
    ALIGNMENTS, Encoder, PagePair, Pattern, all_capacities, check_capacities, check_kernel,
    check_kernel_on_seed_pairs, pair_strategy,
};
use proptest::prelude::*;
use xbzrle::{Encoded, Kernel};
use xbzrle_testkit::{Rng, canonical_delta};

/// The kernels under test: all but the reference, which is the comparison.
fn kernels() -> impl Iterator<Item = Kernel> {
    Kernel::available().filter(|&k| k != Kernel::Reference)
}

/// Runs `check` for `kernel` when the CPU supports it, else says so.
fn if_available(kernel: Kernel, check: impl FnOnce(Kernel)) {
    if kernel.is_available() {
        check(kernel);
    } else {
        eprintln!("kernel {kernel} is not supported by this CPU: not tested");
    }
}

#[test]
fn reference_on_seed_pairs() {
    check_kernel_on_seed_pairs(Kernel::Reference);
}

#[test]
fn word_on_seed_pairs() {
    if_available(Kernel::Word, check_kernel_on_seed_pairs);
}

#[test]
fn sse2_on_seed_pairs() {
    if_available(Kernel::Sse2, check_kernel_on_seed_pairs);
}

#[test]
fn avx2_on_seed_pairs() {
    if_available(Kernel::Avx2, check_kernel_on_seed_pairs);
}

#[test]
fn avx512_on_seed_pairs() {
    if_available(Kernel::Avx512, check_kernel_on_seed_pairs);
}

#[test]
fn neon_on_seed_pairs() {
    if_available(Kernel::Neon, check_kernel_on_seed_pairs);
}

#[test]
fn the_cpu_offers_its_simd_kernels() {
    #[cfg(target_arch = "x86_64")]
    assert!(Kernel::Sse2.is_available());
    #[cfg(target_arch = "aarch64")]
    assert!(Kernel::Neon.is_available());
    let best = Kernel::best();
    assert!(best.is_available());
    eprintln!(
        "available kernels: {:?}; best: {best}",
        Kernel::available().collect::<Vec<_>>()
    );
}

#[test]
fn unavailable_kernels_are_refused() {
    for kernel in Kernel::ALL.iter().filter(|k| !k.is_available()) {
        let (old, new, mut out) = ([0u8; 8], [1u8; 8], [0u8; 16]);
        assert_eq!(
            kernel.encode(&old, &new, &mut out),
            Err(xbzrle::KernelUnavailable(*kernel))
        );
        let mut cached = old;
        assert_eq!(
            kernel.encode_update(&mut cached, &new, &mut out),
            Err(xbzrle::KernelUnavailable(*kernel))
        );
        assert_eq!(cached, old, "{kernel}: refused kernel touched the page");
    }
}

/// Runs of 2^21 bytes and more take 4-byte ULEB128 lengths (unchanged and changed runs).
#[test]
fn four_byte_lengths() {
    const LEN: usize = (1 << 21) + 3000;
    let mut rng = Rng::new(4);
    let mut old = vec![0; LEN];
    rng.fill(&mut old);
    let mut long_zrun = old.clone();
    for byte in &mut long_zrun[(1 << 21) + 5..(1 << 21) + 900] {
        *byte ^= rng.flip();
    }
    let mut long_nzrun = old.clone();
    for byte in &mut long_nzrun[7..(1 << 21) + 70] {
        *byte ^= rng.flip();
    }
    for (name, new) in [("long zrun", long_zrun), ("long nzrun", long_nzrun)] {
        let pair = PagePair {
            name: name.into(),
            old: old.clone(),
            new,
        };
        let expected = canonical_delta(&pair.old, &pair.new);
        assert!(
            expected
                .windows(4)
                .any(|w| w[..3].iter().all(|b| b & 0x80 != 0))
        );
        for kernel in kernels() {
            check_kernel(kernel, &pair, 5);
        }
    }
}

/// The free functions run [`Kernel::best`].
#[test]
fn free_functions_use_the_best_kernel() {
    for pair in common::page_pairs(4097, 11) {
        let expected = canonical_delta(&pair.old, &pair.new);
        let mut out = vec![0; expected.len()];
        let mut best_out = vec![0; expected.len()];
        let result = xbzrle::encode(&pair.old, &pair.new, &mut out);
        let best = Kernel::best().encode(&pair.old, &pair.new, &mut best_out);
        assert_eq!(Ok(result), best, "{}", pair.name);
        assert_eq!(out, best_out, "{}", pair.name);
        let mut cached = pair.old.clone();
        let result = xbzrle::encode_update(&mut cached, &pair.new, &mut out);
        assert_eq!(Ok(result), best, "{}", pair.name);
        assert_eq!(cached, pair.new, "{}", pair.name);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random structured pairs at a random alignment round: exact bytes at an ample capacity
    /// and at the edge capacities, for every kernel, and the same output as the reference.
    #[test]
    fn kernels_equal_the_oracle_and_the_reference(
        pair in pair_strategy(20_000),
        align in 0..ALIGNMENTS,
    ) {
        let expected = canonical_delta(&pair.old, &pair.new);
        let capacity = expected.len() + 16;
        let mut reference = vec![0; capacity];
        let want = Kernel::Reference.encode(&pair.old, &pair.new, &mut reference).unwrap();
        for kernel in kernels() {
            check_kernel(kernel, &pair, align);
            let mut out = vec![0; capacity];
            let got = kernel.encode(&pair.old, &pair.new, &mut out).unwrap();
            prop_assert_eq!(got, want, "{} on {:?}", kernel, pair);
            if let Encoded::Delta(n) = got {
                prop_assert!(out[..n] == reference[..n], "{} on {:?}", kernel, pair);
            }
        }
    }

    /// Small pairs at every capacity from 0 to the canonical length + 1.
    #[test]
    fn kernels_overflow_exactly_at_every_capacity(
        pair in pair_strategy(300),
        align in 0..ALIGNMENTS,
    ) {
        let expected = canonical_delta(&pair.old, &pair.new);
        for kernel in kernels() {
            for encoder in [Encoder::Canonical(kernel), Encoder::Update(kernel)] {
                check_capacities(encoder, &pair, &expected, all_capacities(expected.len()), align);
            }
        }
    }

    /// Unstructured pairs: arbitrary bytes, with the new page a few XOR edits of the old one.
    #[test]
    fn kernels_on_arbitrary_edits(
        old in prop::collection::vec(any::<u8>(), 0..5000),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..200, 1u8..), 0..12),
        align in 0..ALIGNMENTS,
    ) {
        let mut new = old.clone();
        for (at, run, flip) in edits {
            if !new.is_empty() {
                let start = at.index(new.len());
                let end = (start + run).min(new.len());
                new[start..end].iter_mut().for_each(|b| *b ^= flip);
            }
        }
        let pair = PagePair { name: "arbitrary edits".into(), old, new };
        for kernel in kernels() {
            check_kernel(kernel, &pair, align);
        }
    }
}

/// Every pattern at page lengths that are not multiples of 64 and cross the 4-block group
/// (256 bytes) in every way, at every alignment round.
#[test]
fn kernels_on_group_and_tail_lengths() {
    for len in [255, 256, 257, 319, 320, 321, 511, 512, 513, 575, 1000] {
        for pattern in Pattern::for_len(len) {
            let pair = PagePair::new(pattern, len, 0x7a11);
            for align in (0..ALIGNMENTS).step_by(7) {
                for kernel in kernels() {
                    check_kernel(kernel, &pair, align);
                }
            }
        }
    }
}
