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

use std::sync::OnceLock;

/// Signature shared by every unmask path: XOR `buf` in place with `key`,
/// starting at key byte `offset % 4`.
pub type MaskFn = fn(buf: &mut [u8], key: [u8; 4], offset: usize);

/// Below this length [`apply_mask`] skips the dispatch and runs the inlined
/// word path: the SIMD paths would only run their scalar tail anyway.
const SMALL_LEN: usize = 32;

/// The key rotated so that its first byte is the one applied at `offset`.
#[inline(always)]
fn rotated_key(key: [u8; 4], offset: usize) -> [u8; 4] {
    let r = offset & 3;
    [key[r], key[(r + 1) & 3], key[(r + 2) & 3], key[(r + 3) & 3]]
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
    if buf.len() < SMALL_LEN {
        mask_words(buf, key, offset);
    } else {
        (selected().func)(buf, key, offset);
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
/// into a `u64` and applied to each 8-byte chunk; the last `len % 8` bytes are
/// done one at a time. No alignment is required of `buf`.
pub fn apply_mask_u64(buf: &mut [u8], key: [u8; 4], offset: usize) {
    mask_words(buf, key, offset);
}

/// The body of [`apply_mask_u64`], inlinable into [`apply_mask`]'s small case
/// and into the SIMD paths' tails.
#[inline(always)]
fn mask_words(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let k = rotated_key(key, offset);
    let word = u64::from_ne_bytes([k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    // Whole words advance the key by a multiple of 4, so `k` still lines up.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= k[i & 3];
    }
}

/// Buffers at least this long get their vector stores aligned by masking a
/// short unaligned head first; below it the head costs more than it saves.
const ALIGN_MIN_LEN: usize = 256;

/// Splits off the head of `buf` that precedes the first `align`-byte boundary,
/// so the SIMD bulk never splits a store across cache lines. Payloads usually
/// start at an odd address (right after a 2-14 byte frame header).
#[inline(always)]
fn split_unaligned_head(buf: &mut [u8], align: usize) -> (&mut [u8], &mut [u8]) {
    let head = if buf.len() >= ALIGN_MIN_LEN {
        buf.as_ptr().align_offset(align).min(buf.len())
    } else {
        0
    };
    buf.split_at_mut(head)
}

/// XOR `buf` in place with `key` using 16-byte SSE2 vectors.
///
/// SSE2 is part of the x86_64 baseline, so this path is always available
/// there. The bulk is processed 64 bytes per iteration with unaligned loads
/// and stores; the remaining bytes go through the word path.
#[cfg(target_arch = "x86_64")]
pub fn apply_mask_sse2(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let (head, body) = split_unaligned_head(buf, 16);
    mask_words(head, key, offset);
    let offset = offset.wrapping_add(head.len());
    let done = x86::sse2_bulk(body, rotated_key(key, offset));
    mask_words(&mut body[done..], key, offset.wrapping_add(done));
}

/// XOR `buf` in place with `key` using 32-byte AVX2 vectors.
///
/// AVX2 is detected at run time (the result is cached by the standard
/// library); on a CPU without it this falls back to [`apply_mask_u64`], so it
/// is always safe to call. The bulk is processed 128 bytes per iteration with
/// unaligned loads and stores; the remaining bytes go through the word path.
#[cfg(target_arch = "x86_64")]
pub fn apply_mask_avx2(buf: &mut [u8], key: [u8; 4], offset: usize) {
    if !std::arch::is_x86_feature_detected!("avx2") {
        mask_words(buf, key, offset);
        return;
    }
    let (head, body) = split_unaligned_head(buf, 32);
    mask_words(head, key, offset);
    let offset = offset.wrapping_add(head.len());
    // SAFETY: AVX2 support was checked just above.
    let done = unsafe { x86::avx2_bulk(body, rotated_key(key, offset)) };
    mask_words(&mut body[done..], key, offset.wrapping_add(done));
}

/// XOR `buf` in place with `key` using 16-byte NEON vectors.
///
/// NEON is standard on aarch64 Linux; should a target lack it, this falls
/// back to [`apply_mask_u64`]. The bulk is processed 64 bytes per iteration;
/// the remaining bytes go through the word path.
#[cfg(target_arch = "aarch64")]
pub fn apply_mask_neon(buf: &mut [u8], key: [u8; 4], offset: usize) {
    if !std::arch::is_aarch64_feature_detected!("neon") {
        mask_words(buf, key, offset);
        return;
    }
    let (head, body) = split_unaligned_head(buf, 16);
    mask_words(head, key, offset);
    let offset = offset.wrapping_add(head.len());
    // SAFETY: NEON support was checked just above.
    let done = unsafe { arm::neon_bulk(body, rotated_key(key, offset)) };
    mask_words(&mut body[done..], key, offset.wrapping_add(done));
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        __m128i, __m256i, _mm_loadu_si128, _mm_storeu_si128, _mm_xor_si128, _mm256_loadu_si256,
        _mm256_storeu_si256, _mm256_xor_si256,
    };

    /// Masks the longest prefix of `buf` that is a multiple of 16 bytes with
    /// the already rotated key `k`; returns its length.
    pub(super) fn sse2_bulk(buf: &mut [u8], k: [u8; 4]) -> usize {
        let len = buf.len();
        let p = buf.as_mut_ptr();
        let pattern = [u32::from_ne_bytes(k); 4];
        // SAFETY: `pattern` is 16 readable bytes; unaligned load; SSE2 is baseline.
        let kv = unsafe { _mm_loadu_si128(pattern.as_ptr().cast()) };
        let mut i = 0;
        while i + 64 <= len {
            // SAFETY: bytes i..i+64 are inside `buf`, which is borrowed mutably,
            // and the loads/stores are the unaligned kind. SSE2 is baseline.
            unsafe {
                let q = p.add(i).cast::<__m128i>();
                let a = _mm_loadu_si128(q);
                let b = _mm_loadu_si128(q.add(1));
                let c = _mm_loadu_si128(q.add(2));
                let d = _mm_loadu_si128(q.add(3));
                _mm_storeu_si128(q, _mm_xor_si128(a, kv));
                _mm_storeu_si128(q.add(1), _mm_xor_si128(b, kv));
                _mm_storeu_si128(q.add(2), _mm_xor_si128(c, kv));
                _mm_storeu_si128(q.add(3), _mm_xor_si128(d, kv));
            }
            i += 64;
        }
        while i + 16 <= len {
            // SAFETY: bytes i..i+16 are inside `buf`; unaligned load/store.
            unsafe {
                let q = p.add(i).cast::<__m128i>();
                _mm_storeu_si128(q, _mm_xor_si128(_mm_loadu_si128(q), kv));
            }
            i += 16;
        }
        i
    }

    /// Masks the longest prefix of `buf` that is a multiple of 32 bytes with
    /// the already rotated key `k`; returns its length.
    ///
    /// # Safety
    ///
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn avx2_bulk(buf: &mut [u8], k: [u8; 4]) -> usize {
        let len = buf.len();
        let p = buf.as_mut_ptr();
        let pattern = [u32::from_ne_bytes(k); 8];
        // SAFETY: `pattern` is 32 readable bytes; unaligned load; AVX2 per the caller.
        let kv = unsafe { _mm256_loadu_si256(pattern.as_ptr().cast()) };
        let mut i = 0;
        while i + 128 <= len {
            // SAFETY: bytes i..i+128 are inside `buf`, which is borrowed mutably,
            // and the loads/stores are the unaligned kind. AVX2 per the caller.
            unsafe {
                let q = p.add(i).cast::<__m256i>();
                let a = _mm256_loadu_si256(q);
                let b = _mm256_loadu_si256(q.add(1));
                let c = _mm256_loadu_si256(q.add(2));
                let d = _mm256_loadu_si256(q.add(3));
                _mm256_storeu_si256(q, _mm256_xor_si256(a, kv));
                _mm256_storeu_si256(q.add(1), _mm256_xor_si256(b, kv));
                _mm256_storeu_si256(q.add(2), _mm256_xor_si256(c, kv));
                _mm256_storeu_si256(q.add(3), _mm256_xor_si256(d, kv));
            }
            i += 128;
        }
        while i + 32 <= len {
            // SAFETY: bytes i..i+32 are inside `buf`; unaligned load/store.
            unsafe {
                let q = p.add(i).cast::<__m256i>();
                _mm256_storeu_si256(q, _mm256_xor_si256(_mm256_loadu_si256(q), kv));
            }
            i += 32;
        }
        if i + 16 <= len {
            // SAFETY: bytes i..i+16 are inside `buf` and `pattern` holds at
            // least 16 bytes; unaligned loads/store; AVX2 implies SSE2.
            unsafe {
                let q = p.add(i).cast::<__m128i>();
                let kv = _mm_loadu_si128(pattern.as_ptr().cast());
                _mm_storeu_si128(q, _mm_xor_si128(_mm_loadu_si128(q), kv));
            }
            i += 16;
        }
        i
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use std::arch::aarch64::{veorq_u8, vld1q_u8, vst1q_u8};

    /// Masks the longest prefix of `buf` that is a multiple of 16 bytes with
    /// the already rotated key `k`; returns its length.
    ///
    /// # Safety
    ///
    /// The CPU must support NEON.
    #[target_feature(enable = "neon")]
    pub(super) unsafe fn neon_bulk(buf: &mut [u8], k: [u8; 4]) -> usize {
        let len = buf.len();
        let p = buf.as_mut_ptr();
        let pattern = [u32::from_ne_bytes(k); 4];
        // SAFETY: `pattern` is 16 readable bytes; NEON per the caller.
        let kv = unsafe { vld1q_u8(pattern.as_ptr().cast()) };
        let mut i = 0;
        while i + 64 <= len {
            // SAFETY: bytes i..i+64 are inside `buf`, which is borrowed mutably;
            // vld1q/vst1q have no alignment requirement. NEON per the caller.
            unsafe {
                let q = p.add(i);
                let a = vld1q_u8(q);
                let b = vld1q_u8(q.add(16));
                let c = vld1q_u8(q.add(32));
                let d = vld1q_u8(q.add(48));
                vst1q_u8(q, veorq_u8(a, kv));
                vst1q_u8(q.add(16), veorq_u8(b, kv));
                vst1q_u8(q.add(32), veorq_u8(c, kv));
                vst1q_u8(q.add(48), veorq_u8(d, kv));
            }
            i += 64;
        }
        while i + 16 <= len {
            // SAFETY: bytes i..i+16 are inside `buf`; no alignment requirement.
            unsafe {
                let q = p.add(i);
                vst1q_u8(q, veorq_u8(vld1q_u8(q), kv));
            }
            i += 16;
        }
        i
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
    func: MaskFn,
}

/// Picks the path once; afterwards each lookup is one atomic load.
fn selected() -> &'static Selected {
    static SELECTED: OnceLock<Selected> = OnceLock::new();
    SELECTED.get_or_init(|| {
        // The last entry of `available_paths` is the widest one detected.
        let (name, func) = available_paths()
            .pop()
            .expect("bytewise and u64 paths are always available");
        Selected { name, func }
    })
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
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (dc, sc) in (&mut d).zip(&mut s) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(sc);
        dc.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    for (i, (db, sb)) in d.into_remainder().iter_mut().zip(s.remainder()).enumerate() {
        *db = sb ^ key[i & 3];
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
