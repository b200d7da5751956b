//! Encoding kernels and their run-time selection.

pub(crate) mod reference;

use crate::encode::Encoded;
use core::fmt;

/// An encoding kernel. All kernels produce byte-identical canonical output; they differ
/// only in speed and in the CPU features they need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Kernel {
    /// Byte-at-a-time scalar reference: simple, obviously right, the oracle for the others.
    Reference,
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
    pub const ALL: &'static [Kernel] = &[Kernel::Reference];

    /// Short lowercase name (`"reference"`, …).
    pub const fn name(self) -> &'static str {
        match self {
            Kernel::Reference => "reference",
        }
    }

    /// The kernel with this [`name`](Kernel::name), if any.
    pub fn from_name(name: &str) -> Option<Kernel> {
        Self::ALL.iter().copied().find(|k| k.name() == name)
    }

    /// Whether this CPU can run the kernel.
    pub fn is_available(self) -> bool {
        match self {
            Kernel::Reference => true,
        }
    }

    /// The kernels this CPU can run, slowest tier first.
    pub fn available() -> impl Iterator<Item = Kernel> {
        Self::ALL.iter().copied().filter(|k| k.is_available())
    }

    /// The fastest available kernel, detected once and cached.
    pub fn best() -> Kernel {
        Kernel::Reference
    }

    /// Canonical encode with this kernel (see [`crate::encode`]).
    pub fn encode(
        self,
        old: &[u8],
        new: &[u8],
        out: &mut [u8],
    ) -> Result<Encoded, KernelUnavailable> {
        if !self.is_available() {
            return Err(KernelUnavailable(self));
        }
        Ok(self.encode_unchecked_availability(old, new, out))
    }

    /// Single-pass encode and refresh with this kernel (see [`crate::encode_update`]).
    pub fn encode_update(
        self,
        cached: &mut [u8],
        new: &[u8],
        out: &mut [u8],
    ) -> Result<Encoded, KernelUnavailable> {
        if !self.is_available() {
            return Err(KernelUnavailable(self));
        }
        Ok(self.encode_update_unchecked_availability(cached, new, out))
    }

    /// Runs the kernel; the caller has established that it is available.
    pub(crate) fn encode_unchecked_availability(
        self,
        old: &[u8],
        new: &[u8],
        out: &mut [u8],
    ) -> Encoded {
        check_lengths(old, new);
        match self {
            Kernel::Reference => reference::encode(old, new, out),
        }
    }

    /// Runs the kernel; the caller has established that it is available.
    pub(crate) fn encode_update_unchecked_availability(
        self,
        cached: &mut [u8],
        new: &[u8],
        out: &mut [u8],
    ) -> Encoded {
        check_lengths(cached, new);
        match self {
            Kernel::Reference => reference::encode_update(cached, new, out),
        }
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn check_lengths(old: &[u8], new: &[u8]) {
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
