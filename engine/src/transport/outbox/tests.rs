//! The send queue's order, partial writes, moves between queues and the pool.

use super::*;

fn drain(outbox: &mut Outbox, pool: &mut BufferPool, step: usize) -> Vec<u8> {
    let mut sent = Vec::new();
    while !outbox.is_empty() {
        let mut slices = [IoSlice::new(&[]); 2];
        let count = outbox.io_slices(&mut slices);
        let flat: Vec<u8> = slices[..count]
            .iter()
            .flat_map(|s| s.iter().copied())
            .collect();
        let n = flat.len().min(step);
        sent.extend_from_slice(&flat[..n]);
        outbox.consume(pool, n);
    }
    sent
}

#[test]
fn order_is_kept_across_copied_shared_and_sealed_frames() {
    for step in [1, 3, 7, 1000] {
        let mut pool = BufferPool::default();
        let mut o = Outbox::default();
        o.push_copy(&mut pool, b"h1", b"aaa");
        o.push_shared(&mut pool, Bytes::from_static(b"SHARED"));
        o.push_copy(&mut pool, b"h2", b"bb");
        o.seal(&mut pool);
        o.push_copy(&mut pool, b"h3", b"c");
        o.push_shared(&mut pool, Bytes::from_static(b"X"));
        assert_eq!(o.len(), 5 + 6 + 4 + 3 + 1);
        assert_eq!(
            drain(&mut o, &mut pool, step),
            b"h1aaaSHAREDh2bbh3cX",
            "step {step}"
        );
        assert!(o.is_empty());
    }
}

#[test]
fn partial_writes_resume_and_memory_goes_back_to_the_pool() {
    let mut pool = BufferPool::default();
    let mut o = Outbox::default();
    o.push_copy(&mut pool, b"", &[1; 100]);
    o.consume(&mut pool, 40);
    o.push_shared(&mut pool, Bytes::from(vec![2; 10]));
    assert_eq!(o.len(), 70);
    let rest = drain(&mut o, &mut pool, 13);
    assert_eq!(rest, [vec![1; 60], vec![2; 10]].concat());
    assert_eq!(o.staging.capacity(), 0);
    assert!(o.chunks.is_none());
    // Its chunk queue is spare for the next connection.
    assert_eq!(pool.queues.len(), 1);
    o.push_shared(&mut pool, Bytes::from_static(b"again"));
    assert!(pool.queues.is_empty());
    o.clear(&mut pool);
    // The staging buffer is reused for the next send.
    assert_eq!(pool.spare.len(), 1);
    o.push_copy(&mut pool, b"", &[3; 10]);
    assert!(pool.spare.is_empty());
}

#[test]
fn staged_frames_are_one_slice_and_a_chunk_before_them_is_not() {
    let mut pool = BufferPool::default();
    let mut o = Outbox::default();
    assert_eq!(o.as_one_slice(), Some(&b""[..]));
    o.push_copy(&mut pool, b"h1", b"aaa");
    o.push_copy(&mut pool, b"h2", b"bb");
    assert_eq!(o.as_one_slice(), Some(&b"h1aaah2bb"[..]));
    o.consume(&mut pool, 3);
    assert_eq!(o.as_one_slice(), Some(&b"aah2bb"[..]));
    // A shared frame is a chunk of its own: the bytes lie in two places.
    o.push_shared(&mut pool, Bytes::from_static(b"SHARED"));
    assert_eq!(o.as_one_slice(), None);
    assert_eq!(drain(&mut o, &mut pool, 100), b"aah2bbSHARED");
    o.push_copy(&mut pool, b"h3", b"c");
    assert_eq!(o.as_one_slice(), Some(&b"h3c"[..]));
}

#[test]
fn copy_front_copies_across_chunks_without_consuming() {
    let mut pool = BufferPool::default();
    let mut o = Outbox::default();
    o.push_copy(&mut pool, b"ab", b"c");
    o.push_shared(&mut pool, Bytes::from_static(b"DEF"));
    o.push_copy(&mut pool, b"gh", b"");
    o.consume(&mut pool, 1);
    let mut dst = b"x".to_vec();
    assert_eq!(o.copy_front(5, &mut dst), 5);
    assert_eq!(dst, b"xbcDEF");
    assert_eq!(o.len(), 7);
    let mut all = Vec::new();
    assert_eq!(o.copy_front(100, &mut all), 7);
    assert_eq!(all, b"bcDEFgh");
    o.consume(&mut pool, 5);
    let mut rest = Vec::new();
    assert_eq!(o.copy_front(1, &mut rest), 1);
    assert_eq!(rest, b"g");
    assert_eq!(drain(&mut o, &mut pool, 100), b"gh");
}

#[test]
fn fill_with_keeps_only_what_was_written() {
    let mut pool = BufferPool::default();
    let mut o = Outbox::default();
    o.push_copy(&mut pool, b"ab", b"");
    let n = o
        .fill_with(&mut pool, 10, |out| {
            out[..3].copy_from_slice(b"xyz");
            Ok::<_, ()>(3)
        })
        .unwrap();
    assert_eq!(n, 3);
    assert!(o.fill_with(&mut pool, 10, |_| Err(())).is_err());
    assert_eq!(o.len(), 5);
    assert_eq!(drain(&mut o, &mut pool, 100), b"abxyz");
    // A failed fill of an empty outbox leaves it holding nothing.
    assert!(o.fill_with(&mut pool, 10, |_| Err(())).is_err());
    assert_eq!(o.staging.capacity(), 0);
}

#[test]
fn append_with_keeps_what_was_appended() {
    let mut pool = BufferPool::default();
    let mut o = Outbox::default();
    o.append_with(&mut pool, 8, |out| out.extend_from_slice(b"abc"));
    o.push_copy(&mut pool, b"d", b"");
    assert_eq!(o.len(), 4);
    assert_eq!(drain(&mut o, &mut pool, 100), b"abcd");
    // Appending nothing to an empty outbox leaves it holding nothing.
    o.append_with(&mut pool, 8, |_| {});
    assert!(o.is_empty());
    assert_eq!(o.staging.capacity(), 0);
}

#[test]
fn pool_keeps_what_a_tick_needed() {
    let mut pool = BufferPool::default();
    // A burst: 8 buffers out at once, all given back.
    let burst: Vec<Vec<u8>> = (0..8).map(|_| pool.take(4096)).collect();
    for buf in burst {
        pool.give(buf);
    }
    pool.trim(); // the burst's tick: all 8 were needed
    assert_eq!(pool.spare.len(), 8);
    // Steady load: one buffer out at a time.
    let one = pool.take(10);
    pool.give(one);
    pool.trim();
    assert_eq!(pool.spare.len(), 1);
    // Idle.
    pool.trim();
    assert!(pool.spare.is_empty());
    assert_eq!(pool.bytes, 0);
}

#[test]
fn pool_is_bounded() {
    let mut pool = BufferPool::default();
    pool.give(Vec::with_capacity(BufferPool::MAX_BUFFER + 1));
    assert!(pool.spare.is_empty());
    for _ in 0..(BufferPool::MAX_BYTES / (64 << 10)) + 10 {
        pool.give(Vec::with_capacity(64 << 10));
    }
    assert!(pool.bytes <= BufferPool::MAX_BYTES);
}

#[test]
fn move_front_hands_over_whole_buffers_and_splits_by_the_shorter_side() {
    let mut pool = BufferPool::default();
    let mut src = Outbox::default();
    let big: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
    src.push_copy(&mut pool, b"hh", &big);
    src.push_shared(&mut pool, Bytes::from_static(b"SHARED"));
    src.push_copy(&mut pool, b"tail", b"");
    src.consume(&mut pool, 1);
    let mut dst = Outbox::default();
    dst.push_copy(&mut pool, b"D", b"");
    // Cut near the start of the first buffer (its head copied), then near
    // its end (its tail copied), then inside the shared frame, then the rest.
    src.move_front(&mut pool, 3, &mut dst);
    src.move_front(&mut pool, 9_990, &mut dst);
    assert_eq!(src.len(), 8 + 6 + 4);
    src.move_front(&mut pool, 10, &mut dst);
    src.move_front(&mut pool, 100, &mut dst);
    assert!(src.is_empty());
    let mut expected = b"Dh".to_vec();
    expected.extend_from_slice(&big);
    expected.extend_from_slice(b"SHAREDtail");
    assert_eq!(dst.len(), expected.len());
    assert_eq!(drain(&mut dst, &mut pool, 777), expected);
    assert_eq!(pool.outstanding, 0, "every buffer back in the pool");
}

#[test]
fn move_front_keeps_order_with_what_the_destination_staged() {
    let mut pool = BufferPool::default();
    let mut src = Outbox::default();
    src.push_copy(&mut pool, b"abc", b"def");
    let mut dst = Outbox::default();
    dst.push_copy(&mut pool, b"1", b"");
    src.move_front(&mut pool, 6, &mut dst);
    dst.push_copy(&mut pool, b"2", b"");
    src.push_copy(&mut pool, b"gh", b"");
    src.move_front(&mut pool, 1, &mut dst);
    assert_eq!(src.len(), 1);
    assert_eq!(drain(&mut dst, &mut pool, 2), b"1abcdef2g");
    assert_eq!(drain(&mut src, &mut pool, 2), b"h");
}
