//! Encoding kernels and their run-time selection.
//!
//! Tiers, slowest first: the byte-at-a-time [`Reference`](Kernel::Reference) (the oracle),
//! the word-at-a-time [`Word`](Kernel::Word) (the speed baseline, like QEMU's C encoder),
//! then the SIMD kernels [`Sse2`](Kernel::Sse2), [`Avx2`](Kernel::Avx2) and
//! [`Avx512`](Kernel::Avx512) on x86-64 and [`Neon`](Kernel::Neon) on aarch64. The SIMD
//! kernels share one algorithm (`generic.rs`) over a 64-byte block type per ISA; only their
//! thin entry points carry `#[target_feature]`, and they run only after the CPU check.
//!
//! With the `std` feature the CPU is probed at run time and the choice of [`Kernel::best`]
//! is made once and cached; the environment variable [`XBZRLE_KERNEL`](Kernel::ENV_VAR)
//! caps it. Without `std`, a SIMD kernel is available only when the build enables its
//! target feature (e.g. `-C target-feature=+avx2`; NEON is on by default on aarch64).

pub(crate) mod reference;
mod word;

use crate::encoded::Encoded;
use crate::source::PageSource;
use core::fmt;

/// Whether the CPU has the x86 feature `$feature`: probed at run time with `std`, else
/// known at compile time.
#[cfg(all(target_arch = "x86_64", feature = "std"))]
macro_rules! x86_has {
    ($feature:tt) => {
        std::arch::is_x86_feature_detected!($feature)
    };
}
#[cfg(all(target_arch = "x86_64", not(feature = "std")))]
macro_rules! x86_has {
    ($feature:tt) => {
        cfg!(target_feature = $feature)
    };
}

/// Whether the CPU has the aarch64 feature `$feature`: probed at run time with `std`, else
/// known at compile time.
#[cfg(all(target_arch = "aarch64", feature = "std"))]
macro_rules! aarch64_has {
    ($feature:tt) => {
        std::arch::is_aarch64_feature_detected!($feature)
    };
}
#[cfg(all(target_arch = "aarch64", not(feature = "std")))]
macro_rules! aarch64_has {
    ($feature:tt) => {
        cfg!(target_feature = $feature)
    };
}

/// The `#[target_feature]` entry points of a SIMD kernel module, generated from its block
/// type `$block`, its features `[$feature, ...]` and the detection macro `$has` (`x86_has`
/// or `aarch64_has`): `is_available()`, and the unsafe `encode` and `encode_update`, which
/// run the algorithm of `generic.rs` over `$block` and require the features.
#[allow(unused_macros, reason = "unused on architectures without SIMD kernels")]
macro_rules! simd_entry_points {
    ($block:ident, [$($feature:tt),+], $has:ident) => {
        /// Whether the CPU supports this kernel.
        #[inline]
        pub(super) fn is_available() -> bool {
            $($has!($feature))&&+
        }

        /// Canonical encode.
        ///
        /// # Safety
        /// The CPU supports this kernel ([`is_available`]); the lengths passed
        /// `check_lengths`.
        #[target_feature($(enable = $feature),+)]
        pub(super) unsafe fn encode(
            old: &[u8],
            new: &[u8],
            out: &mut [u8],
        ) -> $crate::encoded::Encoded {
            // SAFETY: the caller's contract is `generic::encode`'s.
            unsafe { super::generic::encode::<$block>(old, new, out) }
        }

        /// Single-pass encode and refresh.
        ///
        /// # Safety
        /// As for [`encode`].
        #[target_feature($(enable = $feature),+)]
        pub(super) unsafe fn encode_update<S: $crate::PageSource + ?Sized>(
            cached: &mut [u8],
            new: &S,
            out: &mut [u8],
        ) -> $crate::encoded::Encoded {
            // SAFETY: the caller's contract is `generic::encode_update`'s.
            unsafe { super::generic::encode_update::<$block, S>(cached, new, out) }
        }
    };
}

/// Declares the SIMD kernel modules, each compiled only for its architecture, and the
/// dispatch that reaches them: the one place where the architecture `cfg`s live.
macro_rules! simd_kernels {
    ($($variant:ident => $module:ident on $arch:literal),* $(,)?) => {
        #[cfg(any($(target_arch = $arch),*))]
        mod generic;
        $(
            #[cfg(target_arch = $arch)]
            mod $module;
        )*

        /// Whether `kernel` is a SIMD kernel this CPU can run.
        fn simd_is_available(kernel: Kernel) -> bool {
            match kernel {
                $(
                    #[cfg(target_arch = $arch)]
                    Kernel::$variant => $module::is_available(),
                )*
                _ => false,
            }
        }

        impl Available {
            /// Canonical encode; the lengths passed [`check_lengths`].
            #[inline]
            fn encode(self, old: &[u8], new: &[u8], out: &mut [u8]) -> Encoded {
                match self.0 {
                    Kernel::Reference => reference::encode(old, new, out),
                    $(
                        #[cfg(target_arch = $arch)]
                        // SAFETY: an `Available` kernel runs on this CPU.
                        Kernel::$variant => unsafe { $module::encode(old, new, out) },
                    )*
                    // `Word` (a kernel of another architecture is never `Available`).
                    _ => word::encode(old, new, out),
                }
            }

            /// Single-pass encode and refresh; the lengths passed [`check_lengths`].
            #[inline]
            fn encode_update<S: PageSource + ?Sized>(
                self,
                cached: &mut [u8],
                new: &S,
                out: &mut [u8],
            ) -> Encoded {
                match self.0 {
                    Kernel::Reference => reference::encode_update(cached, new, out),
                    $(
                        #[cfg(target_arch = $arch)]
                        // SAFETY: an `Available` kernel runs on this CPU.
                        Kernel::$variant => unsafe { $module::encode_update(cached, new, out) },
                    )*
                    // `Word` (a kernel of another architecture is never `Available`).
                    _ => word::encode_update(cached, new, out),
                }
            }
        }
    };
}

simd_kernels! {
    Sse2 => sse2 on "x86_64",
    Avx2 => avx2 on "x86_64",
    Avx512 => avx512 on "x86_64",
    Neon => neon on "aarch64",
}

/// A kernel this CPU can run: made only after checking ([`Available::new`]) or from the
/// cached choice of [`Kernel::best`], so that running it needs no second check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Available(Kernel);

impl Available {
    /// `kernel`, if this CPU can run it.
    #[inline]
    fn new(kernel: Kernel) -> Option<Self> {
        kernel.is_available().then_some(Self(kernel))
    }

    /// The fastest available kernel, detected once and cached (see [`Kernel::best`]).
    #[inline]
    pub(crate) fn best() -> Self {
        #[cfg(feature = "std")]
        {
            detected::best()
        }
        #[cfg(not(feature = "std"))]
        {
            fastest_available(None)
        }
    }

    /// [`Available::encode`] after checking the lengths.
    ///
    /// # Panics
    /// As [`crate::encode`].
    #[inline]
    pub(crate) fn encode_checked(self, old: &[u8], new: &[u8], out: &mut [u8]) -> Encoded {
        check_lengths(old.len(), new.len());
        self.encode(old, new, out)
    }

    /// [`Available::encode_update`] after checking the lengths.
    ///
    /// # Panics
    /// As [`crate::encode_update`].
    #[inline]
    pub(crate) fn encode_update_checked<S: PageSource + ?Sized>(
        self,
        cached: &mut [u8],
        new: &S,
        out: &mut [u8],
    ) -> Encoded {
        check_lengths(cached.len(), new.len());
        self.encode_update(cached, new, out)
    }
}

/// An encoding kernel. All kernels produce byte-identical canonical output; they differ
/// only in speed and in the CPU features they need.
///
/// Every variant exists on every target; [`Kernel::is_available`] says whether this CPU
/// can run it. The order of the variants is the tier order used by [`Kernel::best`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Kernel {
    /// Byte-at-a-time scalar reference: simple, obviously right, the oracle for the others.
    Reference,
    /// Word-at-a-time scalar (8 bytes per step, like QEMU's C encoder); runs anywhere. The
    /// speed baseline.
    Word,
    /// SSE2, x86-64: a 64-byte block in four 16-byte vectors.
    Sse2,
    /// AVX2 (and POPCNT), x86-64: a 64-byte block in two 32-byte vectors.
    Avx2,
    /// AVX-512BW (and POPCNT), x86-64: one compare gives the 64-bit mask of a block.
    Avx512,
    /// NEON, aarch64: four 16-byte vectors per block, masks narrowed without `movemask`.
    Neon,
}

/// The requested kernel needs CPU features this machine does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KernelUnavailable(pub Kernel);

impl fmt::Display for KernelUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kernel {} is not supported by this CPU", self.0.name())
    }
}

impl core::error::Error for KernelUnavailable {}

impl Kernel {
    /// Every kernel, slowest tier first.
    pub const ALL: &'static [Kernel] = &[
        Kernel::Reference,
        Kernel::Word,
        Kernel::Sse2,
        Kernel::Avx2,
        Kernel::Avx512,
        Kernel::Neon,
    ];

    /// Environment variable read once by [`Kernel::best`] (with the `std` feature): the
    /// [`name`](Kernel::name) of the highest tier it may pick.
    pub const ENV_VAR: &'static str = "XBZRLE_KERNEL";

    /// Short lowercase name: `"reference"`, `"word"`, `"sse2"`, `"avx2"`, `"avx512"`,
    /// `"neon"`.
    pub const fn name(self) -> &'static str {
        match self {
            Kernel::Reference => "reference",
            Kernel::Word => "word",
            Kernel::Sse2 => "sse2",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512 => "avx512",
            Kernel::Neon => "neon",
        }
    }

    /// The kernel with this [`name`](Kernel::name), ignoring ASCII case, if any.
    pub fn from_name(name: &str) -> Option<Kernel> {
        Self::ALL
            .iter()
            .copied()
            .find(|k| k.name().eq_ignore_ascii_case(name))
    }

    /// Whether this CPU can run the kernel.
    #[inline]
    pub fn is_available(self) -> bool {
        match self {
            Kernel::Reference | Kernel::Word => true,
            simd => simd_is_available(simd),
        }
    }

    /// The kernels this CPU can run, slowest tier first.
    pub fn available() -> impl Iterator<Item = Kernel> {
        Self::ALL.iter().copied().filter(|k| k.is_available())
    }

    /// The kernel the free functions ([`crate::encode`], [`crate::encode_update`]) run: the
    /// fastest available one, detected once and cached.
    ///
    /// With the `std` feature, the environment variable [`XBZRLE_KERNEL`](Kernel::ENV_VAR)
    /// (read once, at the first call) caps the choice, to test or measure a lower tier on a
    /// capable machine: `XBZRLE_KERNEL=sse2` picks the fastest available kernel at or below
    /// `sse2` in [`Kernel::ALL`] order, `XBZRLE_KERNEL=reference` the reference. An unknown
    /// name is ignored.
    #[inline]
    pub fn best() -> Kernel {
        Available::best().0
    }

    /// Canonical encode with this kernel (see [`crate::encode`]).
    ///
    /// # Errors
    /// [`KernelUnavailable`] when this CPU cannot run the kernel.
    ///
    /// # Panics
    /// If `old` and `new` differ in length or are longer than `u32::MAX` bytes.
    pub fn encode(
        self,
        old: &[u8],
        new: &[u8],
        out: &mut [u8],
    ) -> Result<Encoded, KernelUnavailable> {
        let kernel = Available::new(self).ok_or(KernelUnavailable(self))?;
        Ok(kernel.encode_checked(old, new, out))
    }

    /// Single-pass encode and refresh with this kernel (see [`crate::encode_update`]).
    ///
    /// # Errors
    /// [`KernelUnavailable`] when this CPU cannot run the kernel.
    ///
    /// # Panics
    /// If `cached` and `new` differ in length or are longer than `u32::MAX` bytes.
    pub fn encode_update<S: PageSource + ?Sized>(
        self,
        cached: &mut [u8],
        new: &S,
        out: &mut [u8],
    ) -> Result<Encoded, KernelUnavailable> {
        let kernel = Available::new(self).ok_or(KernelUnavailable(self))?;
        Ok(kernel.encode_update_checked(cached, new, out))
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The fastest available kernel at or below `cap` in tier order.
fn fastest_available(cap: Option<Kernel>) -> Available {
    Kernel::ALL
        .iter()
        .rev()
        .filter(|&&k| cap.is_none_or(|cap| k <= cap))
        .find_map(|&k| Available::new(k))
        .unwrap_or(Available(Kernel::Reference))
}

/// Run-time choice of [`Kernel::best`], made once.
#[cfg(feature = "std")]
mod detected {
    use super::{Available, Kernel, fastest_available};
    use core::sync::atomic::{AtomicU8, Ordering};

    /// Index in [`Kernel::ALL`] of the chosen kernel, or [`UNKNOWN`] before the first call.
    /// Only [`detect`] stores it, with a kernel it found available.
    static BEST: AtomicU8 = AtomicU8::new(UNKNOWN);
    const UNKNOWN: u8 = u8::MAX;

    #[inline]
    pub(super) fn best() -> Available {
        let index = BEST.load(Ordering::Relaxed);
        match Kernel::ALL.get(usize::from(index)) {
            // Stored by `detect`, which checked it.
            Some(&kernel) => Available(kernel),
            None => detect(),
        }
    }

    /// Probes the CPU and the environment and caches the choice. Racing threads compute
    /// the same value.
    #[cold]
    fn detect() -> Available {
        let cap = std::env::var(Kernel::ENV_VAR).ok();
        let kernel = choose(cap.as_deref());
        let index = Kernel::ALL.iter().position(|&k| k == kernel.0);
        if let Some(index) = index.and_then(|i| u8::try_from(i).ok()) {
            BEST.store(index, Ordering::Relaxed);
        }
        kernel
    }

    /// The choice for the environment variable's value `cap`.
    pub(super) fn choose(cap: Option<&str>) -> Available {
        fastest_available(cap.and_then(|name| Kernel::from_name(name.trim())))
    }
}

/// Panics unless the pages have the same length, at most `u32::MAX` bytes.
pub(crate) fn check_lengths(old: usize, new: usize) {
    assert_eq!(old, new, "old and new pages must have the same length");
    assert!(
        u32::try_from(old).is_ok(),
        "page longer than u32::MAX bytes"
    );
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::{Kernel, detected::choose, fastest_available};

    #[test]
    fn names_round_trip_in_tier_order() {
        for (i, &kernel) in Kernel::ALL.iter().enumerate() {
            assert_eq!(Kernel::from_name(kernel.name()), Some(kernel));
            assert_eq!(
                Kernel::from_name(&kernel.name().to_ascii_uppercase()),
                Some(kernel)
            );
            assert!(Kernel::ALL[..i].iter().all(|&lower| lower < kernel));
        }
        assert_eq!(Kernel::from_name("avx"), None);
    }

    #[test]
    fn best_is_the_fastest_available_and_never_the_reference_by_default() {
        let fastest = Kernel::available().last();
        assert_eq!(choose(None).0, fastest.unwrap_or(Kernel::Reference));
        assert!(choose(None).0 >= Kernel::Word);
        assert!(Kernel::best().is_available());
    }

    #[test]
    fn the_environment_value_caps_the_tier() {
        assert_eq!(choose(Some("reference")).0, Kernel::Reference);
        assert_eq!(choose(Some("word")).0, Kernel::Word);
        assert_eq!(choose(Some(" Word\n")).0, Kernel::Word);
        assert_eq!(choose(Some("no-such-kernel")), choose(None));
        for &cap in Kernel::ALL {
            let chosen = choose(Some(cap.name())).0;
            assert!(chosen <= cap && chosen.is_available());
            assert_eq!(chosen == cap, cap.is_available());
            assert_eq!(chosen, fastest_available(Some(cap)).0);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x86_availability_follows_the_cpu() {
        assert!(Kernel::Sse2.is_available());
        assert!(!Kernel::Neon.is_available());
        let popcnt = std::arch::is_x86_feature_detected!("popcnt");
        assert_eq!(
            Kernel::Avx2.is_available(),
            std::arch::is_x86_feature_detected!("avx2") && popcnt
        );
        assert_eq!(
            Kernel::Avx512.is_available(),
            std::arch::is_x86_feature_detected!("avx512bw") && popcnt
        );
    }

    #[cfg(target_arch = "aarch64")]
    #[test]
    fn aarch64_has_neon_only() {
        assert!(Kernel::Neon.is_available());
        assert!(!Kernel::Sse2.is_available() && !Kernel::Avx2.is_available());
    }
}

/// A kernel name that is none of [`Kernel::name`]'s: the error of `str::parse::<Kernel>()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UnknownKernel;

impl fmt::Display for UnknownKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown kernel name (expected one of")?;
        for kernel in Kernel::ALL {
            write!(f, " {}", kernel.name())?;
        }
        f.write_str(")")
    }
}

impl core::error::Error for UnknownKernel {}

impl core::str::FromStr for Kernel {
    type Err = UnknownKernel;

    /// [`Kernel::from_name`] as a `Result`:
    ///
    /// ```
    /// use xbzrle::{Kernel, UnknownKernel};
    ///
    /// assert_eq!("avx2".parse(), Ok(Kernel::Avx2));
    /// assert_eq!("Word".parse(), Ok(Kernel::Word));
    /// assert_eq!("mmx".parse::<Kernel>(), Err(UnknownKernel));
    /// assert!(UnknownKernel.to_string().contains(" reference word sse2 "));
    /// ```
    fn from_str(name: &str) -> Result<Self, UnknownKernel> {
        Self::from_name(name).ok_or(UnknownKernel)
    }
}
