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

use crate::encode::Encoded;
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

/// Declares the SIMD kernel modules, each compiled only for its architecture, and the
/// three functions that reach them: the one place where the architecture `cfg`s live.
/// Each module has `is_available()`, and `encode`/`encode_update` returning `None` when
/// the CPU lacks its features.
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

        /// Encodes with SIMD kernel `kernel`; `None` if this CPU cannot run it.
        fn simd_encode(kernel: Kernel, old: &[u8], new: &[u8], out: &mut [u8]) -> Option<Encoded> {
            match kernel {
                $(
                    #[cfg(target_arch = $arch)]
                    Kernel::$variant => $module::encode(old, new, out),
                )*
                _ => None,
            }
        }

        /// Encodes and refreshes with SIMD kernel `kernel`; `None` if this CPU cannot run it.
        fn simd_encode_update(
            kernel: Kernel,
            cached: &mut [u8],
            new: &[u8],
            out: &mut [u8],
        ) -> Option<Encoded> {
            match kernel {
                $(
                    #[cfg(target_arch = $arch)]
                    Kernel::$variant => $module::encode_update(cached, new, out),
                )*
                _ => None,
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
    /// AVX2, x86-64: a 64-byte block in two 32-byte vectors.
    Avx2,
    /// AVX-512BW, x86-64: one compare gives the 64-bit mask of a block.
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

#[cfg(feature = "std")]
impl std::error::Error for KernelUnavailable {}

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
        #[cfg(feature = "std")]
        {
            detected::best()
        }
        #[cfg(not(feature = "std"))]
        {
            fastest_available(None)
        }
    }

    /// Canonical encode with this kernel (see [`crate::encode`]).
    ///
    /// # Panics
    /// If `old` and `new` differ in length or are longer than `u32::MAX` bytes.
    pub fn encode(
        self,
        old: &[u8],
        new: &[u8],
        out: &mut [u8],
    ) -> Result<Encoded, KernelUnavailable> {
        check_lengths(old, new);
        match self {
            Kernel::Reference => Ok(reference::encode(old, new, out)),
            Kernel::Word => Ok(word::encode(old, new, out)),
            simd => simd_encode(simd, old, new, out).ok_or(KernelUnavailable(simd)),
        }
    }

    /// Single-pass encode and refresh with this kernel (see [`crate::encode_update`]).
    ///
    /// # Panics
    /// If `cached` and `new` differ in length or are longer than `u32::MAX` bytes.
    pub fn encode_update(
        self,
        cached: &mut [u8],
        new: &[u8],
        out: &mut [u8],
    ) -> Result<Encoded, KernelUnavailable> {
        check_lengths(cached, new);
        match self {
            Kernel::Reference => Ok(reference::encode_update(cached, new, out)),
            Kernel::Word => Ok(word::encode_update(cached, new, out)),
            simd => simd_encode_update(simd, cached, new, out).ok_or(KernelUnavailable(simd)),
        }
    }

    /// Runs a kernel obtained from [`Kernel::best`], hence available. (Were it not, the
    /// [`Word`](Kernel::Word) kernel would run instead: the SIMD entry points check the CPU
    /// themselves.)
    #[inline]
    pub(crate) fn encode_unchecked_availability(
        self,
        old: &[u8],
        new: &[u8],
        out: &mut [u8],
    ) -> Encoded {
        self.encode(old, new, out)
            .unwrap_or_else(|_| word::encode(old, new, out))
    }

    /// Runs a kernel obtained from [`Kernel::best`], hence available (else the
    /// [`Word`](Kernel::Word) kernel).
    #[inline]
    pub(crate) fn encode_update_unchecked_availability(
        self,
        cached: &mut [u8],
        new: &[u8],
        out: &mut [u8],
    ) -> Encoded {
        self.encode_update(cached, new, out)
            .unwrap_or_else(|_| word::encode_update(cached, new, out))
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The fastest available kernel at or below `cap` in tier order.
fn fastest_available(cap: Option<Kernel>) -> Kernel {
    Kernel::available()
        .filter(|&k| cap.is_none_or(|cap| k <= cap))
        .last()
        .unwrap_or(Kernel::Reference)
}

/// Run-time choice of [`Kernel::best`], made once.
#[cfg(feature = "std")]
mod detected {
    use super::{Kernel, fastest_available};
    use core::sync::atomic::{AtomicU8, Ordering};

    /// Index in [`Kernel::ALL`] of the chosen kernel, or [`UNKNOWN`] before the first call.
    static BEST: AtomicU8 = AtomicU8::new(UNKNOWN);
    const UNKNOWN: u8 = u8::MAX;

    #[inline]
    pub(super) fn best() -> Kernel {
        let index = BEST.load(Ordering::Relaxed);
        match Kernel::ALL.get(usize::from(index)) {
            Some(&kernel) => kernel,
            None => detect(),
        }
    }

    /// Probes the CPU and the environment and caches the choice. Racing threads compute
    /// the same value.
    #[cold]
    fn detect() -> Kernel {
        let cap = std::env::var(Kernel::ENV_VAR).ok();
        let kernel = choose(cap.as_deref());
        let index = Kernel::ALL.iter().position(|&k| k == kernel);
        if let Some(index) = index.and_then(|i| u8::try_from(i).ok()) {
            BEST.store(index, Ordering::Relaxed);
        }
        kernel
    }

    /// The choice for the environment variable's value `cap`.
    pub(super) fn choose(cap: Option<&str>) -> Kernel {
        fastest_available(cap.and_then(|name| Kernel::from_name(name.trim())))
    }
}

/// Panics unless the pages have the same length, at most `u32::MAX` bytes.
pub(crate) fn check_lengths(old: &[u8], new: &[u8]) {
    assert_eq!(
        old.len(),
        new.len(),
        "old and new pages must have the same length"
    );
    assert!(
        u32::try_from(old.len()).is_ok(),
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
        assert_eq!(choose(None), fastest.unwrap_or(Kernel::Reference));
        assert!(choose(None) >= Kernel::Word);
        assert!(Kernel::best().is_available());
    }

    #[test]
    fn the_environment_value_caps_the_tier() {
        assert_eq!(choose(Some("reference")), Kernel::Reference);
        assert_eq!(choose(Some("word")), Kernel::Word);
        assert_eq!(choose(Some(" Word\n")), Kernel::Word);
        assert_eq!(choose(Some("no-such-kernel")), choose(None));
        for &cap in Kernel::ALL {
            let chosen = choose(Some(cap.name()));
            assert!(chosen <= cap && chosen.is_available());
            assert_eq!(chosen == cap, cap.is_available());
            assert_eq!(chosen, fastest_available(Some(cap)));
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x86_availability_follows_the_cpu() {
        assert!(Kernel::Sse2.is_available());
        assert!(!Kernel::Neon.is_available());
        assert_eq!(
            Kernel::Avx2.is_available(),
            std::arch::is_x86_feature_detected!("avx2")
        );
        assert_eq!(
            Kernel::Avx512.is_available(),
            std::arch::is_x86_feature_detected!("avx512bw")
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
