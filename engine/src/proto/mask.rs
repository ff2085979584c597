//! Payload masking (RFC 6455, section 5.3).
//!
//! Byte `i` of a masked payload is XORed with `key[i % 4]`. Because a payload
//! usually arrives over several reads, every function here takes a key
//! `offset`: byte `i` of `buf` is XORed with `key[(offset + i) % 4]`, so
//! masking a payload chunk by chunk, advancing `offset` by each chunk's length,
//! gives the same result as masking it in one go. Masking and unmasking are the
//! same operation.
//!
//! [`apply_mask`] is the entry point; it dispatches to the fastest path this CPU
//! supports, chosen once per process. The individual paths are public so that
//! tests and benchmarks can compare them against [`apply_mask_bytewise`], the
//! definition.
//!
//! Every path except the byte loop handles a ragged head and tail without a
//! byte loop (only buffers under 4 bytes go byte by byte): it loads the first and the last word or vector of the buffer
//! *before* storing anything, masks the aligned middle, then stores those two.
//! Where they overlap the middle, both stores write the same value (original
//! byte XOR the key byte for that position), so nothing is masked twice.

use std::sync::OnceLock;

/// Signature shared by every unmask path: XOR `buf` in place with `key`,
/// starting at key byte `offset % 4`.
pub type MaskFn = fn(buf: &mut [u8], key: [u8; 4], offset: usize);

/// An internal path: `kw` is the key already rotated to `buf[0]` (see
/// [`key_word`]). `unsafe` because some need a CPU feature checked beforehand.
type RawMaskFn = unsafe fn(buf: &mut [u8], kw: u32);

/// Below this length [`apply_mask`] skips the dispatch and runs the inlined
/// word path, which is as fast there as any vector path.
const SMALL_LEN: usize = 32;

/// The key as a native-endian word, rotated so that its first byte in memory
/// is the key byte for stream position `offset`.
#[inline(always)]
fn key_word(key: [u8; 4], offset: usize) -> u32 {
    advance(u32::from_ne_bytes(key), offset)
}

/// The key word for the position `n` bytes further on.
#[inline(always)]
fn advance(kw: u32, n: usize) -> u32 {
    // Only n mod 4 matters, and wrapping sums keep it right: 2^BITS is a
    // multiple of 4.
    let bits = ((n & 3) * 8) as u32;
    if cfg!(target_endian = "little") {
        kw.rotate_right(bits)
    } else {
        kw.rotate_left(bits)
    }
}

/// The key word repeated to 8 bytes.
#[inline(always)]
fn key_u64(kw: u32) -> u64 {
    // Both halves are equal, so this is the same on either endianness.
    u64::from(kw) << 32 | u64::from(kw)
}

/// XOR `buf` in place with `key`, starting at key byte `offset % 4`.
///
/// Dispatches to the fastest path for this CPU (see [`selected_path`]); the
/// choice is made on first use and cached, so each call costs one indirect
/// call. Buffers shorter than 32 bytes are handled inline without dispatch.
///
/// # Examples
///
/// ```
/// use ringws::proto::mask::apply_mask;
///
/// let key = [0x37, 0xfa, 0x21, 0x3d];
/// let mut payload = *b"Hello";
/// apply_mask(&mut payload, key, 0);
/// assert_eq!(payload, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
/// // Unmasking is the same operation, and may be split at any point.
/// let (head, tail) = payload.split_at_mut(2);
/// apply_mask(head, key, 0);
/// apply_mask(tail, key, 2);
/// assert_eq!(&payload, b"Hello");
/// ```
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let kw = key_word(key, offset);
    if buf.len() < SMALL_LEN {
        mask_words(buf, kw);
    } else {
        let raw = selected().raw;
        // SAFETY: `selected` only picks a path whose CPU features it has
        // detected; `raw` has no other precondition.
        unsafe { raw(buf, kw) }
    }
}

/// XOR `buf` in place with `key`, one byte at a time.
///
/// This is the definition of masking and the oracle the other paths are
/// tested against. It is deliberately the plain loop, kept out of line so the
/// benchmarks measure it as written.
#[inline(never)]
pub fn apply_mask_bytewise(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        // Wrapping is harmless: 2^usize::BITS is a multiple of 4.
        *b ^= key[offset.wrapping_add(i) & 3];
    }
}

/// XOR `buf` in place with `key`, eight bytes at a time.
///
/// Portable and free of `unsafe`: the key, rotated by `offset`, is repeated
/// into a `u64` and applied to each 8-byte chunk; a ragged tail is covered by
/// one overlapping word (see the module docs). No alignment is required of
/// `buf`. LLVM usually vectorizes the main loop with the target's baseline
/// SIMD (SSE2 on x86_64).
pub fn apply_mask_u64(buf: &mut [u8], key: [u8; 4], offset: usize) {
    mask_words(buf, key_word(key, offset));
}

/// Reads 8 bytes as a native-endian word; `bytes` must be 8 long.
#[inline(always)]
fn load_u64(bytes: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(bytes);
    u64::from_ne_bytes(w)
}

/// Reads 4 bytes as a native-endian word; `bytes` must be 4 long.
#[inline(always)]
fn load_u32(bytes: &[u8]) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(bytes);
    u32::from_ne_bytes(w)
}

/// The word path, with the key already rotated to `buf[0]`. Inlined into
/// [`apply_mask`]'s small case and into the vector paths' short cases.
#[inline(always)]
fn mask_words(buf: &mut [u8], kw: u32) {
    let len = buf.len();
    if len >= 8 {
        // Loaded before the loop changes any of it (see the module docs).
        let last = load_u64(&buf[len - 8..]) ^ key_u64(advance(kw, len - 8));
        let k = key_u64(kw);
        let mut chunks = buf.chunks_exact_mut(8);
        for chunk in &mut chunks {
            chunk.copy_from_slice(&(load_u64(chunk) ^ k).to_ne_bytes());
        }
        if !chunks.into_remainder().is_empty() {
            buf[len - 8..].copy_from_slice(&last.to_ne_bytes());
        }
    } else if len >= 4 {
        let first = load_u32(&buf[..4]) ^ kw;
        let last = load_u32(&buf[len - 4..]) ^ advance(kw, len - 4);
        buf[..4].copy_from_slice(&first.to_ne_bytes());
        buf[len - 4..].copy_from_slice(&last.to_ne_bytes());
    } else {
        for (b, k) in buf.iter_mut().zip(kw.to_ne_bytes()) {
            *b ^= k;
        }
    }
}

/// [`mask_words`] as a [`RawMaskFn`], for CPUs without a vector path.
///
/// # Safety
///
/// None: `unsafe` only to fit the type.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn raw_words(buf: &mut [u8], kw: u32) {
    mask_words(buf, kw);
}

/// XOR `buf` in place with `key` using 16-byte SSE2 vectors.
///
/// SSE2 is part of the x86_64 baseline, so this path is always available
/// there. The middle of the buffer is processed 64 bytes per iteration with
/// 16-byte-aligned stores; buffers under 16 bytes take the word path.
#[cfg(target_arch = "x86_64")]
pub fn apply_mask_sse2(buf: &mut [u8], key: [u8; 4], offset: usize) {
    x86::mask_sse2(buf, key_word(key, offset));
}

/// XOR `buf` in place with `key` using 32-byte AVX2 vectors.
///
/// AVX2 is detected at run time (the result is cached by the standard
/// library); on a CPU without it this falls back to [`apply_mask_u64`], so it
/// is always safe to call. The middle of the buffer is processed 128 bytes
/// per iteration with 32-byte-aligned stores; buffers under 32 bytes take the
/// SSE2 or word path.
#[cfg(target_arch = "x86_64")]
pub fn apply_mask_avx2(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let kw = key_word(key, offset);
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 support was checked just above.
        unsafe { x86::mask_avx2(buf, kw) }
    } else {
        mask_words(buf, kw);
    }
}

/// XOR `buf` in place with `key` using 16-byte NEON vectors.
///
/// NEON is standard on aarch64 Linux; should a target lack it, this falls
/// back to [`apply_mask_u64`]. The middle of the buffer is processed 64 bytes
/// per iteration; buffers under 16 bytes take the word path.
#[cfg(target_arch = "aarch64")]
pub fn apply_mask_neon(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let kw = key_word(key, offset);
    if std::arch::is_aarch64_feature_detected!("neon") {
        // SAFETY: NEON support was checked just above.
        unsafe { arm::mask_neon(buf, kw) }
    } else {
        mask_words(buf, kw);
    }
}

/// Bytes before the first `align`-byte boundary in `buf`, or 0 if that
/// cannot be computed (alignment is only a speed-up).
#[inline(always)]
fn head_len(buf: &[u8], align: usize) -> usize {
    match buf.as_ptr().align_offset(align) {
        n if n < align => n,
        _ => 0,
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{advance, head_len, mask_words};
    use std::arch::x86_64::{
        __m128i, __m256i, _mm_loadu_si128, _mm_set1_epi32, _mm_storeu_si128, _mm_xor_si128,
        _mm256_loadu_si256, _mm256_set1_epi32, _mm256_storeu_si256, _mm256_xor_si256,
    };

    /// The SSE2 path, with the key already rotated to `buf[0]`.
    #[inline(always)]
    pub(super) fn mask_sse2(buf: &mut [u8], kw: u32) {
        const W: usize = 16;
        let len = buf.len();
        if len < W {
            return mask_words(buf, kw);
        }
        let head = head_len(buf, W);
        let mid_end = head + (len - head) / W * W;
        let p = buf.as_mut_ptr();
        // SAFETY: SSE2 is baseline on x86_64. `len >= 16`, so the first and
        // last 16 bytes (`p`, `p + len - 16`) are inside `buf`; the middle
        // vectors start at `head < 16` and end at `mid_end <= len`. Loads and
        // stores are the unaligned kind. `buf` is borrowed mutably, so no one
        // else sees the buffer while it is rewritten; the first and last
        // vectors are loaded before any store (see the module docs).
        unsafe {
            let first = _mm_loadu_si128(p.cast::<__m128i>());
            let last = _mm_loadu_si128(p.add(len - W).cast::<__m128i>());
            let kv = _mm_set1_epi32(advance(kw, head) as i32);
            let mut i = head;
            while i + 4 * W <= mid_end {
                let q = p.add(i).cast::<__m128i>();
                let a = _mm_loadu_si128(q);
                let b = _mm_loadu_si128(q.add(1));
                let c = _mm_loadu_si128(q.add(2));
                let d = _mm_loadu_si128(q.add(3));
                _mm_storeu_si128(q, _mm_xor_si128(a, kv));
                _mm_storeu_si128(q.add(1), _mm_xor_si128(b, kv));
                _mm_storeu_si128(q.add(2), _mm_xor_si128(c, kv));
                _mm_storeu_si128(q.add(3), _mm_xor_si128(d, kv));
                i += 4 * W;
            }
            while i < mid_end {
                let q = p.add(i).cast::<__m128i>();
                _mm_storeu_si128(q, _mm_xor_si128(_mm_loadu_si128(q), kv));
                i += W;
            }
            let k_first = _mm_set1_epi32(kw as i32);
            let k_last = _mm_set1_epi32(advance(kw, len - W) as i32);
            _mm_storeu_si128(p.cast::<__m128i>(), _mm_xor_si128(first, k_first));
            _mm_storeu_si128(
                p.add(len - W).cast::<__m128i>(),
                _mm_xor_si128(last, k_last),
            );
        }
    }

    /// The whole AVX2 path, with the key already rotated to `buf[0]`.
    ///
    /// # Safety
    ///
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn mask_avx2(buf: &mut [u8], kw: u32) {
        const W: usize = 32;
        let len = buf.len();
        if len < W {
            return mask_sse2(buf, kw);
        }
        let head = head_len(buf, W);
        let mid_end = head + (len - head) / W * W;
        let p = buf.as_mut_ptr();
        // SAFETY: AVX2 per this function's contract. `len >= 32`, so the
        // first and last 32 bytes (`p`, `p + len - 32`) are inside `buf`; the
        // middle vectors start at `head < 32` and end at `mid_end <= len`.
        // Loads and stores are the unaligned kind. `buf` is borrowed mutably;
        // the first and last vectors are loaded before any store.
        unsafe {
            let first = _mm256_loadu_si256(p.cast::<__m256i>());
            let last = _mm256_loadu_si256(p.add(len - W).cast::<__m256i>());
            let kv = _mm256_set1_epi32(advance(kw, head) as i32);
            let mut i = head;
            while i + 4 * W <= mid_end {
                let q = p.add(i).cast::<__m256i>();
                let a = _mm256_loadu_si256(q);
                let b = _mm256_loadu_si256(q.add(1));
                let c = _mm256_loadu_si256(q.add(2));
                let d = _mm256_loadu_si256(q.add(3));
                _mm256_storeu_si256(q, _mm256_xor_si256(a, kv));
                _mm256_storeu_si256(q.add(1), _mm256_xor_si256(b, kv));
                _mm256_storeu_si256(q.add(2), _mm256_xor_si256(c, kv));
                _mm256_storeu_si256(q.add(3), _mm256_xor_si256(d, kv));
                i += 4 * W;
            }
            while i < mid_end {
                let q = p.add(i).cast::<__m256i>();
                _mm256_storeu_si256(q, _mm256_xor_si256(_mm256_loadu_si256(q), kv));
                i += W;
            }
            let k_first = _mm256_set1_epi32(kw as i32);
            let k_last = _mm256_set1_epi32(advance(kw, len - W) as i32);
            _mm256_storeu_si256(p.cast::<__m256i>(), _mm256_xor_si256(first, k_first));
            _mm256_storeu_si256(
                p.add(len - W).cast::<__m256i>(),
                _mm256_xor_si256(last, k_last),
            );
        }
    }

    /// [`mask_sse2`] as a [`RawMaskFn`](super::RawMaskFn).
    ///
    /// # Safety
    ///
    /// None: SSE2 is baseline on x86_64; `unsafe` only to fit the type.
    pub(super) unsafe fn raw_sse2(buf: &mut [u8], kw: u32) {
        mask_sse2(buf, kw);
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use super::{advance, head_len, mask_words};
    use std::arch::aarch64::{
        uint8x16_t, vdupq_n_u32, veorq_u8, vld1q_u8, vreinterpretq_u8_u32, vst1q_u8,
    };

    /// The whole NEON path, with the key already rotated to `buf[0]`.
    ///
    /// # Safety
    ///
    /// The CPU must support NEON.
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn mask_neon(buf: &mut [u8], kw: u32) {
        const W: usize = 16;
        let len = buf.len();
        if len < W {
            return mask_words(buf, kw);
        }
        let head = head_len(buf, W);
        let mid_end = head + (len - head) / W * W;
        let p = buf.as_mut_ptr();
        // SAFETY: NEON per this function's contract. `len >= 16`, so the
        // first and last 16 bytes (`p`, `p + len - 16`) are inside `buf`; the
        // middle vectors start at `head < 16` and end at `mid_end <= len`.
        // vld1q/vst1q need no alignment. `buf` is borrowed mutably; the first
        // and last vectors are loaded before any store.
        unsafe {
            let splat = |w: u32| -> uint8x16_t { vreinterpretq_u8_u32(vdupq_n_u32(w)) };
            let first = vld1q_u8(p);
            let last = vld1q_u8(p.add(len - W));
            let kv = splat(advance(kw, head));
            let mut i = head;
            while i + 4 * W <= mid_end {
                let q = p.add(i);
                let a = vld1q_u8(q);
                let b = vld1q_u8(q.add(W));
                let c = vld1q_u8(q.add(2 * W));
                let d = vld1q_u8(q.add(3 * W));
                vst1q_u8(q, veorq_u8(a, kv));
                vst1q_u8(q.add(W), veorq_u8(b, kv));
                vst1q_u8(q.add(2 * W), veorq_u8(c, kv));
                vst1q_u8(q.add(3 * W), veorq_u8(d, kv));
                i += 4 * W;
            }
            while i < mid_end {
                let q = p.add(i);
                vst1q_u8(q, veorq_u8(vld1q_u8(q), kv));
                i += W;
            }
            vst1q_u8(p, veorq_u8(first, splat(kw)));
            vst1q_u8(p.add(len - W), veorq_u8(last, splat(advance(kw, len - W))));
        }
    }
}

/// Every masking path available on this CPU, with its name: `"bytewise"`,
/// `"u64"`, then `"sse2"` and (if detected) `"avx2"` on x86_64, or `"neon"`
/// on aarch64. Used by the property tests and the benchmarks.
pub fn available_paths() -> Vec<(&'static str, MaskFn)> {
    let mut paths: Vec<(&'static str, MaskFn)> = vec![
        ("bytewise", apply_mask_bytewise as MaskFn),
        ("u64", apply_mask_u64 as MaskFn),
    ];
    #[cfg(target_arch = "x86_64")]
    {
        paths.push(("sse2", apply_mask_sse2 as MaskFn));
        if std::arch::is_x86_feature_detected!("avx2") {
            paths.push(("avx2", apply_mask_avx2 as MaskFn));
        }
    }
    #[cfg(target_arch = "aarch64")]
    if std::arch::is_aarch64_feature_detected!("neon") {
        paths.push(("neon", apply_mask_neon as MaskFn));
    }
    paths
}

/// Name of the path [`apply_mask`] dispatches to on this CPU, as listed by
/// [`available_paths`] (for benchmark tables and logs).
pub fn selected_path() -> &'static str {
    selected().name
}

/// The path chosen for this CPU.
struct Selected {
    name: &'static str,
    /// Called directly by [`apply_mask`], skipping the public wrapper's
    /// feature check.
    raw: RawMaskFn,
}

/// Picks the path once; afterwards each lookup is one atomic load.
fn selected() -> &'static Selected {
    static SELECTED: OnceLock<Selected> = OnceLock::new();
    SELECTED.get_or_init(detect)
}

/// The widest path whose CPU features are present.
#[cfg(target_arch = "x86_64")]
fn detect() -> Selected {
    if std::arch::is_x86_feature_detected!("avx2") {
        Selected {
            name: "avx2",
            raw: x86::mask_avx2,
        }
    } else {
        Selected {
            name: "sse2",
            raw: x86::raw_sse2,
        }
    }
}

/// The widest path whose CPU features are present.
#[cfg(target_arch = "aarch64")]
fn detect() -> Selected {
    if std::arch::is_aarch64_feature_detected!("neon") {
        Selected {
            name: "neon",
            raw: arm::mask_neon,
        }
    } else {
        Selected {
            name: "u64",
            raw: raw_words,
        }
    }
}

/// The widest path whose CPU features are present.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn detect() -> Selected {
    Selected {
        name: "u64",
        raw: raw_words,
    }
}

/// Copy `src` into `dst` masked with `key`, starting at key byte 0.
///
/// This is how the client role masks an outgoing payload straight into its
/// output buffer, without a separate pass over the source.
///
/// # Panics
///
/// If `dst` and `src` differ in length.
pub fn mask_into(dst: &mut [u8], src: &[u8], key: [u8; 4]) {
    assert_eq!(
        dst.len(),
        src.len(),
        "mask_into: destination and source lengths differ"
    );
    let len = src.len();
    let kw = u32::from_ne_bytes(key);
    if len < 8 {
        for ((d, s), k) in dst.iter_mut().zip(src).zip(key.into_iter().cycle()) {
            *d = s ^ k;
        }
        return;
    }
    let k = key_u64(kw);
    let mut d = dst.chunks_exact_mut(8);
    for (dc, sc) in (&mut d).zip(src.chunks_exact(8)) {
        dc.copy_from_slice(&(load_u64(sc) ^ k).to_ne_bytes());
    }
    if !d.into_remainder().is_empty() {
        // One overlapping word for the ragged end; `src` is untouched, so
        // rewriting the overlap gives the same bytes.
        let last = load_u64(&src[len - 8..]) ^ key_u64(advance(kw, len - 8));
        dst[len - 8..].copy_from_slice(&last.to_ne_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Deterministic filler so large payloads need not be proptest values.
    fn fill(buf: &mut [u8], mut seed: u64) {
        for b in buf {
            // xorshift64*; a zero seed would stay zero.
            seed |= 1;
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *b = (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8;
        }
    }

    /// All paths under test: every available one plus the dispatcher.
    fn paths_under_test() -> Vec<(&'static str, MaskFn)> {
        let mut paths = available_paths();
        paths.push(("dispatch", apply_mask as MaskFn));
        paths
    }

    /// Mostly small lengths, where the head/tail handling lives, plus large ones.
    fn len_strategy() -> impl Strategy<Value = usize> {
        prop_oneof![3 => 0usize..100, 1 => 100usize..70_000]
    }

    /// Small offsets, and offsets near 2^32 and 2^64 to check the wrap mod 4.
    fn offset_strategy() -> impl Strategy<Value = usize> {
        let near_u32_max = u32::MAX as usize;
        prop_oneof![
            4 => 0usize..4,
            1 => (near_u32_max - 8)..=near_u32_max,
            1 => (usize::MAX - 8)..=usize::MAX,
        ]
    }

    #[test]
    fn rfc6455_hello_vector() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        for (name, f) in paths_under_test() {
            let mut buf = *b"Hello";
            f(&mut buf, key, 0);
            assert_eq!(buf, [0x7f, 0x9f, 0x4d, 0x51, 0x58], "path {name}");
            f(&mut buf, key, 0);
            assert_eq!(&buf, b"Hello", "path {name}");
        }
        let mut out = [0u8; 5];
        mask_into(&mut out, b"Hello", key);
        assert_eq!(out, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }

    #[test]
    fn empty_buffer_is_untouched() {
        for (_, f) in paths_under_test() {
            let mut buf: [u8; 0] = [];
            f(&mut buf, [1, 2, 3, 4], 3);
        }
        mask_into(&mut [], &[], [1, 2, 3, 4]);
    }

    #[test]
    fn short_lengths_exhaustive() {
        let key = [0xa1, 0x5c, 0x03, 0xfe];
        let mut storage = [0u8; 40 + 64];
        fill(&mut storage, 7);
        for len in 0..=40 {
            for offset in 0..8 {
                for start in 0..32 {
                    let src = &storage[start..start + len];
                    let mut want = src.to_vec();
                    apply_mask_bytewise(&mut want, key, offset);
                    for (name, f) in paths_under_test() {
                        let mut buf = storage;
                        f(&mut buf[start..start + len], key, offset);
                        assert_eq!(
                            &buf[start..start + len],
                            &want[..],
                            "path {name} len {len} offset {offset} start {start}"
                        );
                        assert_eq!(buf[..start], storage[..start], "path {name} wrote before");
                        assert_eq!(
                            buf[start + len..],
                            storage[start + len..],
                            "path {name} wrote past the end"
                        );
                    }
                    let mut out = vec![0u8; len];
                    mask_into(&mut out, src, key);
                    let mut want0 = src.to_vec();
                    apply_mask_bytewise(&mut want0, key, 0);
                    assert_eq!(out, want0, "mask_into len {len} start {start}");
                }
            }
        }
    }

    /// Lengths around every vector width and unroll boundary, at every
    /// start alignment within a cache line and every key phase.
    #[test]
    fn medium_lengths_exhaustive() {
        let key = [0x5a, 0x01, 0xc3, 0x7e];
        let mut storage = vec![0u8; 300 + 64];
        fill(&mut storage, 11);
        let paths = paths_under_test();
        for len in 41..=300 {
            for start in 0..64 {
                for offset in 0..4 {
                    let mut want = storage.clone();
                    apply_mask_bytewise(&mut want[start..start + len], key, offset);
                    for &(name, f) in &paths {
                        let mut buf = storage.clone();
                        f(&mut buf[start..start + len], key, offset);
                        assert!(
                            buf == want,
                            "path {name} len {len} start {start} offset {offset}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn selected_path_is_widest_available() {
        let paths = available_paths();
        let names: Vec<_> = paths.iter().map(|(n, _)| *n).collect();
        assert_eq!(&names[..2], ["bytewise", "u64"]);
        assert_eq!(selected_path(), *names.last().unwrap());
        #[cfg(target_arch = "x86_64")]
        {
            assert!(names.contains(&"sse2"));
            assert_eq!(
                names.contains(&"avx2"),
                std::arch::is_x86_feature_detected!("avx2")
            );
        }
    }

    #[test]
    #[should_panic(expected = "lengths differ")]
    fn mask_into_rejects_length_mismatch() {
        mask_into(&mut [0u8; 3], &[0u8; 4], [1, 2, 3, 4]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Every path, on an unaligned slice inside a larger buffer, equals
        /// the byte loop and leaves the bytes around the slice alone.
        #[test]
        fn paths_match_bytewise(
            len in len_strategy(),
            start in 0usize..64,
            key in any::<[u8; 4]>(),
            offset in offset_strategy(),
            seed in any::<u64>(),
        ) {
            let mut storage = vec![0u8; len + 64];
            fill(&mut storage, seed);
            let mut want = storage.clone();
            apply_mask_bytewise(&mut want[start..start + len], key, offset);
            for (name, f) in paths_under_test() {
                let mut buf = storage.clone();
                f(&mut buf[start..start + len], key, offset);
                prop_assert!(buf == want, "path {} len {} start {} offset {}", name, len, start, offset);
            }
        }

        /// Masking chunk by chunk, advancing the offset by each chunk's
        /// length, equals masking in one go.
        #[test]
        fn chunked_matches_one_shot(
            len in len_strategy(),
            start in 0usize..64,
            key in any::<[u8; 4]>(),
            offset in offset_strategy(),
            seed in any::<u64>(),
            cuts in prop::collection::vec(
                prop_oneof![3 => 0usize..40, 1 => 0usize..20_000],
                0..12,
            ),
        ) {
            let mut storage = vec![0u8; len + 64];
            fill(&mut storage, seed);
            let mut want = storage.clone();
            apply_mask_bytewise(&mut want[start..start + len], key, offset);
            for (name, f) in paths_under_test() {
                let mut buf = storage.clone();
                let mut rest = &mut buf[start..start + len];
                let mut at = offset;
                for &cut in &cuts {
                    let (chunk, tail) = rest.split_at_mut(cut.min(rest.len()));
                    f(chunk, key, at);
                    at = at.wrapping_add(chunk.len());
                    rest = tail;
                }
                f(rest, key, at);
                prop_assert!(buf == want, "path {} len {} cuts {:?}", name, len, cuts);
            }
        }

        /// `mask_into` equals copying and then masking from key byte 0,
        /// whatever the alignment of either slice.
        #[test]
        fn mask_into_matches_bytewise(
            len in len_strategy(),
            src_start in 0usize..64,
            dst_start in 0usize..64,
            key in any::<[u8; 4]>(),
            seed in any::<u64>(),
        ) {
            let mut src = vec![0u8; len + 64];
            fill(&mut src, seed);
            let src = &src[src_start..src_start + len];
            let mut want = src.to_vec();
            apply_mask_bytewise(&mut want, key, 0);
            let mut dst = vec![0u8; len + 64];
            mask_into(&mut dst[dst_start..dst_start + len], src, key);
            prop_assert!(dst[dst_start..dst_start + len] == want[..]);
        }

        /// Masking twice restores the payload on every path.
        #[test]
        fn mask_is_an_involution(
            len in len_strategy(),
            key in any::<[u8; 4]>(),
            offset in offset_strategy(),
            seed in any::<u64>(),
        ) {
            let mut orig = vec![0u8; len];
            fill(&mut orig, seed);
            for (name, f) in paths_under_test() {
                let mut buf = orig.clone();
                f(&mut buf, key, offset);
                f(&mut buf, key, offset);
                prop_assert!(buf == orig, "path {}", name);
            }
        }
    }
}
