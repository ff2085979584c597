//! Sends from where the data lies, shutdown, close causes, commands from other
//! threads, the turn's length, buffers, and the bridge.

use super::*;

#[test]
fn a_large_message_goes_out_from_where_it_lies_during_the_callback() {
    let mut h = Harness::new(config());
    let (key, id) = h.open();
    let big = "x".repeat(20_000);
    h.send_text(key, &big);
    // Written during on_message, before the turn ends: no copy was queued.
    // The echo's header was framed in the receive buffer, right before the
    // payload: one plain write.
    assert_eq!(h.io.frames_written, 1);
    assert_eq!(h.io.frames_written_whole, 1);
    assert_eq!(h.frames(key), [Frame::Text(big.clone())]);
    // A message from the handler's own buffer goes the same way, its header
    // apart.
    h.send_text(key, "flood 1 30000");
    assert_eq!(h.io.frames_written, 2);
    assert_eq!(h.io.frames_written_whole, 1);
    assert_eq!(h.frames(key), [Frame::Binary(30000)]);
    // Small ones wait for the turn's end and go out together.
    h.send_text(key, "small");
    h.send_text(key, "flood 3 100");
    assert_eq!(h.io.frames_written, 2);
    assert!(h.frames(key).is_empty());
    h.turn();
    assert_eq!(
        h.frames(key),
        [
            Frame::Text("small".into()),
            Frame::Binary(100),
            Frame::Binary(100),
            Frame::Binary(100),
        ]
    );
    let seen = h.seen.take();
    assert!(seen.contains(&Seen::Sent(id, vec![SendStatus::Sent])));
    assert!(seen.contains(&Seen::Sent(id, vec![SendStatus::Sent; 3])));
}

#[test]
fn an_echo_whose_header_came_in_an_earlier_read_goes_out_with_its_header_apart() {
    let mut h = Harness::new(config());
    let (key, _) = h.open();
    let big = "y".repeat(70_000);
    let wire = h.text_wire(key, &big);
    // The 14-byte header cut after 3 bytes: the decoder keeps them, and the
    // rest of the frame lies in the second read without a header before it.
    h.send_raw(key, &wire[..3]);
    h.send_raw(key, &wire[3..]);
    assert_eq!(h.io.frames_written, 1);
    assert_eq!(h.io.frames_written_whole, 0);
    assert_eq!(h.frames(key), [Frame::Text(big.clone())]);
    // Whole in one read, a 64-bit length: framed in place (10 of its 14
    // header bytes rewritten).
    h.send_raw(key, &wire);
    assert_eq!(h.io.frames_written_whole, 1);
    assert_eq!(h.frames(key), [Frame::Text(big)]);
}

#[test]
fn a_direct_write_cut_short_queues_only_the_rest_in_order() {
    let mut h = Harness::new(config());
    let (key, id) = h.open();
    h.io.sockets.get_mut(&key).unwrap().room = Some(5000);
    // Two large sends in one callback: the first goes from where it lies
    // and the socket takes 5000 bytes of it; the second finds the rest of the
    // first queued, so it is queued (copied) behind it.
    h.send_text(key, "flood 2 20000");
    assert_eq!(h.io.frames_written, 1);
    assert_eq!(h.socket(key).wire.len() - h.clients[&key].3, 5000);
    use SendStatus::*;
    assert_eq!(
        h.seen.take(),
        [
            Seen::Message(id, "flood 2 20000".into()),
            Seen::Sent(id, vec![Backpressure, Backpressure])
        ]
    );
    h.io.sockets.get_mut(&key).unwrap().room = None;
    h.worker.on_writable(key);
    h.turn();
    assert_eq!(h.seen.take(), [Seen::Drain(id)]);
    assert_eq!(h.frames(key), [Frame::Binary(20000), Frame::Binary(20000)]);
    assert_eq!(h.io.frames_written, 1);
}

#[test]
fn shutdown_closes_with_1001_and_aborts_the_rest_at_the_deadline() {
    let mut h = Harness::new(config());
    let (polite, polite_id) = h.open();
    let (silent, silent_id) = h.open();
    let handshaking = h.accept();
    h.mailbox.send(Command::Shutdown {
        deadline: h.now + Duration::from_millis(500),
    });
    let turn = h.turn();
    assert!(h.io.stopped_accepting && !turn.finished);
    for key in [polite, silent] {
        assert_eq!(h.frames(key), [close_frame(1001, "server shutdown")]);
    }
    // A handshake under way, and one the kernel handed over late, still get
    // their 101, then 1001 at once: a restart fails no handshake.
    let late = h.accept();
    for key in [handshaking, late] {
        h.send_raw(key, REQUEST);
    }
    h.turn();
    for key in [handshaking, late] {
        let head_len = {
            let wire = &h.socket(key).wire;
            assert!(wire.starts_with(b"HTTP/1.1 101"));
            wire.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4
        };
        h.clients.get_mut(&key).unwrap().3 = head_len;
        assert_eq!(h.frames(key), [close_frame(1001, "server shutdown")]);
        h.send_close(key, 1001, "");
        h.worker.on_hangup(key, Hangup::Eof);
    }
    h.turn();
    h.seen.take();
    h.send_close(polite, 1001, "");
    h.worker.on_hangup(polite, Hangup::Eof);
    h.turn();
    assert!(!h.socket(silent).closed);
    h.run_for(500);
    assert!(h.socket(silent).closed);
    assert_eq!(
        h.seen.closes(),
        [
            (polite_id, 1001, String::new(), CloseCause::Shutdown),
            (silent_id, 1001, String::new(), CloseCause::Shutdown)
        ]
    );
    assert!(h.turn().finished);
}

#[test]
fn every_cause_is_reported_once_per_open() {
    let mut h = Harness::new(config());
    let mut expected = Vec::new();
    // Peer close, local close, terminate, reset, EOF mid-stream.
    let (k, id) = h.open();
    h.send_close(k, 1000, "peer");
    expected.push((id, 1000, "peer".to_owned(), CloseCause::Peer));
    let (k, id) = h.open();
    h.send_text(k, "close 1000");
    h.turn();
    h.send_close(k, 1000, "");
    expected.push((id, 1000, String::new(), CloseCause::Local));
    let (k, id) = h.open();
    h.send_text(k, "terminate");
    expected.push((id, 1006, String::new(), CloseCause::Terminated));
    let (k, id) = h.open();
    h.worker.on_hangup(k, Hangup::Error);
    expected.push((id, 1006, String::new(), CloseCause::Reset));
    let (k, id) = h.open();
    h.worker.on_hangup(k, Hangup::Eof);
    expected.push((id, 1006, String::new(), CloseCause::Reset));
    // Protocol errors of each kind, with their close codes.
    let errors: [(&[u8], ProtocolError); 4] = [
        (b"\x81\x05hello", ProtocolError::UnmaskedFrame),
        (b"\x83\x80\0\0\0\0", ProtocolError::ReservedOpcode(3)),
        (b"\x81\x82\0\0\0\0\xc3\x28", ProtocolError::InvalidUtf8),
        (b"\x80\x80\0\0\0\0", ProtocolError::UnexpectedContinuation),
    ];
    for (wire, error) in errors {
        let (k, id) = h.open();
        h.send_raw(k, wire);
        h.turn();
        let code = error.close_code().0;
        assert_eq!(h.frames(k), [close_frame(code, &error.to_string())]);
        expected.push((id, code, error.to_string(), CloseCause::Protocol(error)));
    }
    h.turn();
    // Whatever else happens to them, nothing is reported twice.
    for key in 0..16 {
        h.worker.on_hangup(key, Hangup::Error);
        h.worker.on_released(key);
    }
    h.run_for(3000);
    assert_eq!(h.seen.closes(), expected);
}

#[test]
fn commands_from_other_threads_run_at_the_end_of_the_turn_with_one_wake() {
    let mut h = Harness::new(config());
    let (a, a_id) = h.open();
    let (b, _) = h.open();
    h.send_text(a, "subscribe news");
    h.send_text(b, "subscribe news");
    h.turn();
    h.seen.take();
    let wakes = h.waker.0.load(Ordering::Relaxed);
    for i in 0..100 {
        h.mailbox.send(Command::Publish {
            topic: "news".into(),
            message: PreparedMessage::text(&format!("item {i}")),
        });
    }
    h.mailbox.send(Command::Send {
        id: a_id,
        message: PreparedMessage::text("just for a"),
    });
    h.mailbox.send(Command::Close {
        id: a_id,
        code: CloseCode(4000),
        reason: "bye".into(),
    });
    assert_eq!(
        h.waker.0.load(Ordering::Relaxed),
        wakes + 1,
        "one wake for the burst"
    );
    assert_eq!(h.frames(a), [], "nothing before the turn ends");
    h.turn();
    let frames = h.frames(a);
    assert_eq!(frames.len(), 102);
    assert_eq!(frames[99], Frame::Text("item 99".into()));
    assert_eq!(frames[100], Frame::Text("just for a".into()));
    assert_eq!(frames[101], close_frame(4000, "bye"));
    assert_eq!(h.frames(b).len(), 100);
    // A stale id (the connection is gone) is ignored.
    h.send_close(a, 4000, "");
    h.worker.on_hangup(a, Hangup::Eof);
    h.turn();
    h.mailbox.send(Command::Send {
        id: a_id,
        message: PreparedMessage::text("late"),
    });
    h.turn();
    assert_eq!(h.worker.stats.commands.load(Ordering::Relaxed), 103);
}

#[test]
fn a_queue_longer_than_a_turn_asks_for_an_immediate_next_turn() {
    let mut h = Harness::new(config());
    let (key, _) = h.open();
    h.send_text(key, "subscribe burst");
    h.turn();
    for i in 0..1000 {
        h.mailbox.send(Command::Publish {
            topic: "burst".into(),
            message: PreparedMessage::text(&format!("{i}")),
        });
    }
    // Each publish is its own chunk; a turn writes a bounded number of them.
    let turn = h.turn();
    let first = h.frames(key).len();
    assert!(first < 1000, "{first} frames in one turn");
    assert_eq!(
        turn.wait,
        Duration::ZERO,
        "the rest must not wait for a tick"
    );
    let mut total = first;
    for _ in 0..100 {
        let turn = h.turn();
        total += h.frames(key).len();
        if total == 1000 {
            assert!(turn.wait > Duration::ZERO, "idle again");
            return;
        }
        assert_eq!(turn.wait, Duration::ZERO);
    }
    panic!("only {total} of 1000 frames");
}

#[test]
fn a_split_message_s_buffer_is_reused_then_freed_when_quiet() {
    let mut h = Harness::new(config());
    let (key, id) = h.open();
    let text = "x".repeat(3000);
    let wire = h.text_wire(key, &text);
    // Cut across two reads: the decoder reassembles it in a buffer of its own.
    let (first, second) = wire.split_at(1000);
    h.send_raw(key, first);
    h.send_raw(key, second);
    h.turn();
    assert_eq!(h.seen.take(), [Seen::Message(id, text)]);
    let held = h.worker.conns[key].stream.decoder.buffered_bytes();
    assert!(held >= 3000, "kept for the next split message: {held}");
    // A tick later it is still there; after a whole quiet tick it is gone.
    h.run_for(500);
    assert!(h.worker.conns[key].stream.decoder.buffered_bytes() > 0);
    h.run_for(1000);
    assert_eq!(h.worker.conns[key].stream.decoder.buffered_bytes(), 0);
}

#[test]
fn a_bridge_hears_first_and_last_subscriber_and_local_publishes_only() {
    let bridge = Arc::new(RecordingBridge::default());
    let node = Arc::new(NodeTopics::new(bridge.clone()));
    let mut h = Harness::with_node(config(), Some(node));
    let (a, _) = h.open();
    let (b, _) = h.open();
    h.send_text(a, "subscribe news");
    h.send_text(b, "subscribe news");
    h.turn();
    assert_eq!(bridge.take(), [Call::Subscribe("news".into())]);

    // A publish from a callback: delivered here, handed to the bridge once.
    h.send_text(a, "publish news hello");
    h.turn();
    assert_eq!(h.frames(a), [Frame::Text("hello".into())]);
    assert_eq!(h.frames(b), [Frame::Text("hello".into())]);
    assert_eq!(
        bridge.take(),
        [Call::Publish("news".into(), b"hello".to_vec())]
    );

    // What comes from another node (or worker) as a command is delivered and
    // not handed back to the bridge.
    h.mailbox.send(Command::Publish {
        topic: "news".into(),
        message: PreparedMessage::text("from afar"),
    });
    h.turn();
    assert_eq!(h.frames(a), [Frame::Text("from afar".into())]);
    assert_eq!(h.frames(b), [Frame::Text("from afar".into())]);
    assert_eq!(bridge.take(), []);

    // The last subscriber leaving, by unsubscribing or by ending, unsubscribes the node.
    h.send_text(a, "unsubscribe news");
    h.turn();
    assert_eq!(bridge.take(), []);
    h.worker.on_hangup(b, Hangup::Error);
    h.turn();
    assert_eq!(bridge.take(), [Call::Unsubscribe("news".into())]);
}
