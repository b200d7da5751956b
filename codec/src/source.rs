//! Where an encoder reads the new page from: an ordinary slice, or guest memory that other
//! threads write while it is read.
//!
//! A hypervisor's vCPUs keep writing guest pages while the migration thread encodes them.
//! Reading such memory through `&[u8]` is undefined behaviour in Rust (a shared reference
//! promises that nothing writes the bytes), and an encoder that read a byte twice could
//! send one value and cache another. [`PageSource`] is the one way the encoders of this
//! crate ([`crate::encode_update`], and the sender built on it) read the new page: they ask
//! for every byte exactly once, into their own registers or buffers, and everything they
//! write — the delta and the refreshed cached copy — comes from that one copy. The delta
//! and the cache therefore always agree, whatever the guest writes meanwhile: each byte is
//! one value the guest memory held at some moment during the call.

use core::marker::PhantomData;

/// The new page of an encode: [`len`](PageSource::len) bytes that the encoder copies out
/// with [`read`](PageSource::read), asking for each byte once.
///
/// Implemented for byte slices, arrays and vectors, for [`LivePage`] (memory that other
/// threads write meanwhile), with the `vm-memory` feature for rust-vmm's `VolatileSlice`,
/// and for references to any of them. Other implementations (a VMM's own guest-memory
/// type, a test double that changes the page between reads) only have to copy the bytes
/// asked for: the encoders stay memory-safe whatever `read` returns, and give consistent
/// results as long as `len` does not change.
pub trait PageSource {
    /// Length of the page in bytes.
    fn len(&self) -> usize;

    /// Whether the page is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies the bytes `at..at + dst.len()` of the page into `dst`. Callers keep the range
    /// inside the page; implementations may panic otherwise.
    fn read(&self, at: usize, dst: &mut [u8]);

    /// Asks the CPU to start loading the bytes `at..at + len` (clamped to the page) into its
    /// caches, because they will be read soon; reads nothing and changes nothing. The sender
    /// calls it for the start of a page it saves and, in a batch, of the next page while it
    /// encodes the current one. The provided implementation does nothing.
    fn prefetch(&self, at: usize, len: usize) {
        let _ = (at, len);
    }
}

/// Asks the CPU to start loading the memory of `items` into its caches, because it will be
/// read soon: what [`PageSource::prefetch`] does for a page, for any slice (a page cache's
/// keys and metadata, looked up for the pages after the current one). Reads nothing and
/// changes nothing.
#[inline(always)]
pub fn prefetch_slice<T>(items: &[T]) {
    // From the start of the first cache line, so that every line the items touch is asked
    // for even when they do not start on a line boundary.
    let start: *const u8 = items.as_ptr().cast();
    let offset = start.addr() % LINE;
    let bytes = offset + core::mem::size_of_val(items);
    prefetch_lines(start.wrapping_sub(offset), bytes, 0, bytes);
}

/// Bytes of a CPU cache line (64 on the x86-64 and aarch64 CPUs the kernels target).
const LINE: usize = 64;

/// Prefetches the cache lines of `ptr + at ..` `+ len`, clamped to `page_len` bytes from
/// `ptr`. Only hints: a prefetch instruction never faults and reads nothing observable.
#[inline(always)]
fn prefetch_lines(ptr: *const u8, page_len: usize, at: usize, len: usize) {
    let end = page_len.min(at.saturating_add(len));
    let mut line = at;
    while line < end {
        let p = ptr.wrapping_add(line);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: SSE is part of x86-64; a prefetch accesses no memory the program can
        // observe and does not fault, whatever the address.
        unsafe {
            core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast())
        };
        #[cfg(target_arch = "aarch64")]
        // SAFETY: PRFM is a hint that never faults and writes no register or memory.
        unsafe {
            core::arch::asm!("prfm pldl1keep, [{p}]", p = in(reg) p, options(nostack, readonly, preserves_flags))
        };
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        let _ = p;
        line += LINE;
    }
}

impl<T: PageSource + ?Sized> PageSource for &T {
    #[inline(always)]
    fn len(&self) -> usize {
        (**self).len()
    }

    #[inline(always)]
    fn read(&self, at: usize, dst: &mut [u8]) {
        (**self).read(at, dst);
    }

    #[inline(always)]
    fn prefetch(&self, at: usize, len: usize) {
        (**self).prefetch(at, len);
    }
}

impl PageSource for [u8] {
    #[inline(always)]
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }

    #[inline(always)]
    fn read(&self, at: usize, dst: &mut [u8]) {
        dst.copy_from_slice(&self[at..at + dst.len()]);
    }

    #[inline(always)]
    fn prefetch(&self, at: usize, len: usize) {
        prefetch_lines(self.as_ptr(), self.len(), at, len);
    }
}

impl<const N: usize> PageSource for [u8; N] {
    #[inline(always)]
    fn len(&self) -> usize {
        N
    }

    #[inline(always)]
    fn read(&self, at: usize, dst: &mut [u8]) {
        self.as_slice().read(at, dst);
    }

    #[inline(always)]
    fn prefetch(&self, at: usize, len: usize) {
        self.as_slice().prefetch(at, len);
    }
}

#[cfg(feature = "alloc")]
impl PageSource for alloc::vec::Vec<u8> {
    #[inline(always)]
    fn len(&self) -> usize {
        self.as_slice().len()
    }

    #[inline(always)]
    fn read(&self, at: usize, dst: &mut [u8]) {
        self.as_slice().read(at, dst);
    }

    #[inline(always)]
    fn prefetch(&self, at: usize, len: usize) {
        self.as_slice().prefetch(at, len);
    }
}

/// A page of guest memory that vCPUs, devices or other threads may write while it is being
/// read: a pointer and a length, never turned into a Rust reference.
///
/// Each [`read`](PageSource::read) is one copy out of the memory (`ptr::copy_nonoverlapping`
/// through the raw pointer, as rust-vmm's `vm-memory` copies guest memory), and the
/// encoders ask for each byte once, so a byte written during the call is seen either before
/// or after the write, never both. The bytes of one call may come from different moments:
/// a delta is a consistent snapshot per byte, not of the whole page, which is what
/// live migration needs (the page is dirty again and is resent; the last send, with the
/// guest stopped, makes the destination equal to the source).
#[derive(Debug, Clone, Copy)]
pub struct LivePage<'a> {
    ptr: *const u8,
    len: usize,
    /// Borrows the memory for `'a`, shared with writers.
    memory: PhantomData<&'a [core::cell::UnsafeCell<u8>]>,
}

// SAFETY: a `LivePage` only reads the memory it points to, which its creator promised stays
// readable for `'a` while any thread writes it; sharing or sending the pointer between threads
// adds nothing to that promise.
unsafe impl Send for LivePage<'_> {}
// SAFETY: as above: every use is a read through the raw pointer.
unsafe impl Sync for LivePage<'_> {}

impl<'a> LivePage<'a> {
    /// A page of `len` bytes at `ptr`.
    ///
    /// # Safety
    /// For all of `'a`, `ptr` is valid for reads of `len` bytes (mapped and not freed; it
    /// may be any alignment) and `len <= isize::MAX`. Other threads, devices or a guest may
    /// write these bytes at any time, but no Rust reference to them may be alive (neither
    /// `&` nor `&mut`): write them through raw pointers, as a VMM does.
    pub unsafe fn from_raw_parts(ptr: *const u8, len: usize) -> Self {
        Self {
            ptr,
            len,
            memory: PhantomData,
        }
    }

    /// The first byte of the page.
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr
    }
}

impl PageSource for LivePage<'_> {
    #[inline(always)]
    fn len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    fn read(&self, at: usize, dst: &mut [u8]) {
        assert!(
            at <= self.len && dst.len() <= self.len - at,
            "read past the end of a live page"
        );
        // SAFETY: `at <= len` (checked above), so the offset stays inside the page or one past
        // its end.
        let src = unsafe { self.ptr.add(at) };
        // SAFETY: the `dst.len()` bytes from `src` are inside the page (checked above) and
        // readable for `'a` (the creator's promise); `dst` is our own buffer, which guest
        // memory cannot overlap while `dst` is a live `&mut`.
        unsafe { core::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), dst.len()) };
    }

    #[inline(always)]
    fn prefetch(&self, at: usize, len: usize) {
        prefetch_lines(self.ptr, self.len, at, len);
    }
}

#[cfg(feature = "vm-memory")]
impl<B: vm_memory::bitmap::BitmapSlice> PageSource for vm_memory::VolatileSlice<'_, B> {
    #[inline(always)]
    fn len(&self) -> usize {
        vm_memory::VolatileSlice::len(self)
    }

    #[inline(always)]
    fn read(&self, at: usize, dst: &mut [u8]) {
        assert!(
            at <= self.len() && dst.len() <= self.len() - at,
            "read past the end of a volatile slice"
        );
        // The guard keeps the memory mapped while it is read (Xen mappings).
        let guard = self.ptr_guard();
        // SAFETY: a `VolatileSlice` points to `len()` readable bytes for its lifetime, which
        // other threads may write (the `LivePage` contract); `guard` keeps them mapped.
        let page = unsafe { LivePage::from_raw_parts(guard.as_ptr(), self.len()) };
        page.read(at, dst);
    }

    #[inline(always)]
    fn prefetch(&self, at: usize, len: usize) {
        prefetch_lines(self.ptr_guard().as_ptr(), self.len(), at, len);
    }
}
