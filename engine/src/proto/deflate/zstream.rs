//! zlib's stream API (zlib-rs, through libz-rs-sys) for raw deflate, safe to
//! call: the one place of the codec with `unsafe`. The engine calls zlib-rs
//! this way rather than through flate2 (which wraps the same code) because
//! flate2 does not expose `deflateGetDictionary`/`inflateGetDictionary`,
//! and a live hand-over carries a codec's window with them (a shadow copy
//! of each direction's history would cost a copy per message and 64 KiB
//! per connection).
//!
//! Each stream is boxed: zlib's state points back at its `z_stream`, which
//! must not move between calls. The input and output pointers are set for
//! one call and cleared after it, so the stream never holds a dangling one.

use std::ffi::c_int;
use std::fmt;

use libz_rs_sys as z;

/// The largest window zlib keeps (2^15), and so the largest dictionary
/// either direction gives back.
pub const MAX_WINDOW: usize = 1 << 15;

/// zlib's default memory level (as flate2 used): 128 KiB of hash chains.
const MEM_LEVEL: c_int = 8;

/// How a call went (zlib's return codes less the fatal ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    /// Progress was made, or none was possible (`Z_OK`, `Z_BUF_ERROR`: the
    /// callers tell these apart by what was consumed and produced).
    Ok,
    /// The deflate stream ended (a block with BFINAL).
    StreamEnd,
}

/// The stream's data or state is invalid (`Z_DATA_ERROR`, `Z_STREAM_ERROR`,
/// `Z_MEM_ERROR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Failed;

fn status(ret: c_int) -> Result<Status, Failed> {
    match ret {
        z::Z_OK | z::Z_BUF_ERROR => Ok(Status::Ok),
        z::Z_STREAM_END => Ok(Status::StreamEnd),
        _ => Err(Failed),
    }
}

/// What one call consumed and produced.
struct Step {
    consumed: usize,
    status: Result<Status, Failed>,
}

/// Runs `f` (deflate or inflate) on `strm` over `input` into the spare
/// capacity of `out`, extending `out` by what was written.
fn step(
    strm: &mut z::z_stream,
    input: &[u8],
    out: &mut Vec<u8>,
    f: impl FnOnce(&mut z::z_stream) -> c_int,
) -> Step {
    let spare = out.spare_capacity_mut();
    let (in_len, out_len) = (
        input.len().min(u32::MAX as usize) as u32,
        spare.len().min(u32::MAX as usize) as u32,
    );
    strm.next_in = input.as_ptr();
    strm.avail_in = in_len;
    strm.next_out = spare.as_mut_ptr().cast();
    strm.avail_out = out_len;
    let ret = f(strm);
    let consumed = (in_len - strm.avail_in) as usize;
    let written = (out_len - strm.avail_out) as usize;
    strm.next_in = std::ptr::null();
    strm.avail_in = 0;
    strm.next_out = std::ptr::null_mut();
    strm.avail_out = 0;
    // SAFETY: zlib wrote `written` bytes (at most `out_len`, the spare
    // capacity) from the old end of `out` on, so they are initialized.
    unsafe { out.set_len(out.len() + written) };
    Step {
        consumed,
        status: status(ret),
    }
}

/// Reads a stream's window through `get` (`deflateGetDictionary` or
/// `inflateGetDictionary`).
fn window(
    strm: &z::z_stream,
    get: unsafe extern "C" fn(*const z::z_stream, *mut u8, *mut z::uInt) -> c_int,
) -> Result<Vec<u8>, Failed> {
    let mut dict = Vec::with_capacity(MAX_WINDOW);
    let mut len: z::uInt = 0;
    // SAFETY: `strm` was initialized by the matching init and is alive;
    // both functions write at most the window's size, never past 2^15
    // bytes (zlib's documented bound), which `dict` has room for.
    let ret = unsafe { get(strm, dict.as_mut_ptr(), &mut len) };
    if ret != z::Z_OK || len as usize > MAX_WINDOW {
        return Err(Failed);
    }
    // SAFETY: `len` bytes were written from the start of `dict`.
    unsafe { dict.set_len(len as usize) };
    Ok(dict)
}

/// A raw deflate compressor.
pub(super) struct Deflater(Box<z::z_stream>);

// SAFETY: the stream's state is owned by this value alone (allocated by
// zlib-rs with the Rust allocator, no thread-local data), as zlib-rs's own
// `DeflateStream` is `Send`; `&mut self` serializes every call.
unsafe impl Send for Deflater {}

impl Deflater {
    /// A compressor at `level` (0..=9) with a window of `window_bits` (9..=15).
    pub(super) fn new(level: u32, window_bits: u8) -> Self {
        let mut strm = Box::new(z::z_stream::default());
        // SAFETY: `strm` is a zeroed stream (zlib picks its allocator) at a
        // stable address; the version and size are this library's own.
        let ret = unsafe {
            z::deflateInit2_(
                &mut *strm,
                level.min(9) as c_int,
                z::Z_DEFLATED,
                -c_int::from(window_bits.clamp(9, 15)),
                MEM_LEVEL,
                z::Z_DEFAULT_STRATEGY,
                z::zlibVersion(),
                size_of::<z::z_stream>() as c_int,
            )
        };
        // Only an allocation failure gets here (the parameters are clamped
        // to what zlib accepts): as for any allocation, that aborts.
        assert_eq!(ret, z::Z_OK, "deflateInit2_ failed (out of memory)");
        Self(strm)
    }

    /// Compresses what it can of `input` into `out`'s spare capacity with
    /// `flush` (`Z_NO_FLUSH`, `Z_SYNC_FLUSH`...); returns the bytes consumed.
    pub(super) fn deflate(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        flush: c_int,
    ) -> Result<(usize, Status), Failed> {
        let step = step(&mut self.0, input, out, |strm| {
            // SAFETY: initialized stream; `step` set the buffers to valid
            // memory for the lengths given.
            unsafe { z::deflate(strm, flush) }
        });
        step.status.map(|s| (step.consumed, s))
    }

    /// Forgets the history (no context takeover).
    pub(super) fn reset(&mut self) {
        // SAFETY: initialized stream; a reset of one cannot fail.
        unsafe { z::deflateReset(&mut *self.0) };
    }

    /// The window: the last input, up to 2^window_bits bytes (zlib may
    /// give up to 262 bytes less, never a byte it could still refer to).
    pub(super) fn window(&self) -> Result<Vec<u8>, Failed> {
        window(&self.0, z::deflateGetDictionary)
    }

    /// Primes a fresh compressor with `history` as if it had compressed it
    /// (before its first `deflate`).
    pub(super) fn set_dictionary(&mut self, history: &[u8]) -> Result<(), Failed> {
        let len = z::uInt::try_from(history.len()).map_err(|_| Failed)?;
        // SAFETY: initialized stream; `history` is valid for `len` bytes.
        let ret = unsafe { z::deflateSetDictionary(&mut *self.0, history.as_ptr(), len) };
        status(ret).map(drop)
    }
}

impl Drop for Deflater {
    fn drop(&mut self) {
        // SAFETY: initialized stream, ended once.
        unsafe { z::deflateEnd(&mut *self.0) };
    }
}

impl fmt::Debug for Deflater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deflater")
            .field("total_in", &self.0.total_in)
            .field("total_out", &self.0.total_out)
            .finish()
    }
}

/// A raw deflate decompressor.
pub(super) struct Inflater(Box<z::z_stream>);

// SAFETY: as for `Deflater` (zlib-rs's `InflateStream` is `Send`).
unsafe impl Send for Inflater {}

impl Inflater {
    /// A decompressor with a window of `window_bits` (9..=15).
    pub(super) fn new(window_bits: u8) -> Self {
        let mut strm = Box::new(z::z_stream::default());
        // SAFETY: as in `Deflater::new`.
        let ret = unsafe {
            z::inflateInit2_(
                &mut *strm,
                -c_int::from(window_bits.clamp(9, 15)),
                z::zlibVersion(),
                size_of::<z::z_stream>() as c_int,
            )
        };
        assert_eq!(ret, z::Z_OK, "inflateInit2_ failed (out of memory)");
        Self(strm)
    }

    /// Inflates what it can of `input` into `out`'s spare capacity; returns
    /// the bytes consumed.
    pub(super) fn inflate(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(usize, Status), Failed> {
        let step = step(&mut self.0, input, out, |strm| {
            // SAFETY: initialized stream; `step` set the buffers to valid
            // memory for the lengths given.
            unsafe { z::inflate(strm, z::Z_SYNC_FLUSH) }
        });
        step.status.map(|s| (step.consumed, s))
    }

    /// Forgets the stream and its window (the window bits stay).
    pub(super) fn reset(&mut self) {
        // SAFETY: initialized stream; a reset of one cannot fail.
        unsafe { z::inflateReset(&mut *self.0) };
    }

    /// The window: the last output, up to 2^window_bits bytes.
    pub(super) fn window(&self) -> Result<Vec<u8>, Failed> {
        window(&self.0, z::inflateGetDictionary)
    }

    /// Gives a fresh decompressor `history` as the output it had produced
    /// (a raw inflater takes one at any time).
    pub(super) fn set_dictionary(&mut self, history: &[u8]) -> Result<(), Failed> {
        let len = z::uInt::try_from(history.len()).map_err(|_| Failed)?;
        // SAFETY: initialized stream; `history` is valid for `len` bytes.
        let ret = unsafe { z::inflateSetDictionary(&mut *self.0, history.as_ptr(), len) };
        status(ret).map(drop)
    }
}

impl Drop for Inflater {
    fn drop(&mut self) {
        // SAFETY: initialized stream, ended once.
        unsafe { z::inflateEnd(&mut *self.0) };
    }
}

impl fmt::Debug for Inflater {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inflater")
            .field("total_in", &self.0.total_in)
            .field("total_out", &self.0.total_out)
            .finish()
    }
}
