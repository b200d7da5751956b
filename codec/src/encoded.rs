//! What an encoder reports.

/// Outcome of an encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[must_use = "an encode result says whether to send the delta, nothing, or the raw page"]
pub enum Encoded {
    /// The pages are identical: the delta is empty and nothing needs to be sent.
    Unchanged,
    /// A delta of this many bytes (at least 2) was written at the start of the output buffer.
    Delta(usize),
    /// The delta is longer than the output buffer; send the page raw. Exact: reported only
    /// when the delta really does not fit (QEMU's encoder also gives up when it fits with
    /// fewer than 2 spare bytes before an unchanged run). Bytes of the output buffer may
    /// have been overwritten, but never past its end.
    Overflow,
}
