//! Every way a connection ends, on both backends, against one server: each
//! `on_open` is paired with exactly one `on_close`, with the right cause and
//! code. Causes: peer close, local close, each protocol error a client can
//! commit against a server, timeout (pong deadline), backpressure, terminate, reset, EOF, and
//! shutdown (answered and not).

use std::collections::HashMap;
use std::net::Shutdown;
use std::thread;
use std::time::{Duration, Instant};

use ringws::proto::error::ProtocolError;
use ringws::proto::frame::OpCode;
use ringws::{BackendKind, BackpressurePolicy, CloseCause, ConnId};
use ringws_tests::{
    Client, Echo, Events, Msg, ServerEvent, TIMEOUT, events, masked_frame, start, unmasked_frame,
};

/// The frames of a client that breaks `error`'s rule, as one write.
fn breaking(error: ProtocolError) -> Vec<u8> {
    const KEY: [u8; 4] = [0, 0, 0, 0];
    // A header without payload, masked.
    let raw = |head: &[u8; 2]| {
        let mut frame = vec![head[0], head[1] | 0x80];
        frame.extend_from_slice(&KEY);
        frame
    };
    match error {
        ProtocolError::ReservedOpcode(_) => raw(&[0x83, 0]),
        ProtocolError::ReservedBits => raw(&[0xc1, 0]),
        ProtocolError::UnmaskedFrame => unmasked_frame(true, OpCode::Text, b"hi"),
        ProtocolError::ControlFrameTooLong => {
            let mut frame = vec![0x89, 0xfe, 0, 126];
            frame.extend_from_slice(&KEY);
            frame.extend_from_slice(&[0; 126]);
            frame
        }
        ProtocolError::FragmentedControlFrame => raw(&[0x09, 0]),
        ProtocolError::FrameTooBig => {
            // A 1 MiB binary frame, refused at its header.
            let mut frame = vec![0x82, 0xff, 0, 0, 0, 0, 0, 0x10, 0, 0];
            frame.extend_from_slice(&KEY);
            frame
        }
        ProtocolError::MessageTooBig => {
            let mut frames = masked_frame(false, OpCode::Binary, &[0; 40 << 10]);
            frames.extend(masked_frame(true, OpCode::Continuation, &[0; 40 << 10]));
            frames
        }
        ProtocolError::UnexpectedContinuation => masked_frame(true, OpCode::Continuation, b"x"),
        ProtocolError::ExpectedContinuation => {
            let mut frames = masked_frame(false, OpCode::Text, b"a");
            frames.extend(masked_frame(true, OpCode::Text, b"b"));
            frames
        }
        ProtocolError::InvalidUtf8 => masked_frame(true, OpCode::Text, b"\xc3\x28"),
        ProtocolError::InvalidClosePayload => masked_frame(true, OpCode::Close, b"\x03"),
        ProtocolError::InvalidCloseCode(code) => {
            masked_frame(true, OpCode::Close, &code.to_be_bytes())
        }
        ProtocolError::InvalidCloseReason => masked_frame(true, OpCode::Close, b"\x03\xe8\xff"),
        other => panic!("no client-side way to commit {other:?} here"),
    }
}

// InvalidLength (a 64-bit length with its top bit set) is refused as
// FrameTooBig first by any server with a frame limit.
const ERRORS: [ProtocolError; 13] = [
    ProtocolError::ReservedOpcode(3),
    ProtocolError::ReservedBits,
    ProtocolError::UnmaskedFrame,
    ProtocolError::ControlFrameTooLong,
    ProtocolError::FragmentedControlFrame,
    ProtocolError::FrameTooBig,
    ProtocolError::MessageTooBig,
    ProtocolError::UnexpectedContinuation,
    ProtocolError::ExpectedContinuation,
    ProtocolError::InvalidUtf8,
    ProtocolError::InvalidClosePayload,
    ProtocolError::InvalidCloseCode(1005),
    ProtocolError::InvalidCloseReason,
];

/// The server's reports, gathered as they come: every close, by connection.
#[derive(Default)]
struct Reports {
    closes: HashMap<ConnId, Vec<(u16, String, CloseCause)>>,
}

impl Reports {
    fn take(&mut self, event: ServerEvent) -> Option<ConnId> {
        match event {
            ServerEvent::Open { id, .. } => Some(id),
            ServerEvent::Close {
                id,
                code,
                reason,
                cause,
            } => {
                self.closes
                    .entry(id)
                    .or_default()
                    .push((code, reason, cause));
                None
            }
            _ => None,
        }
    }

    /// The next connection opened; closes reported meanwhile are kept.
    fn open(&mut self, events: &Events) -> ConnId {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = events.next(left).expect("on_open in time");
            if let Some(id) = self.take(event) {
                return id;
            }
        }
    }

    /// Waits until `count` connections have reported their close.
    fn wait_for(&mut self, events: &Events, count: usize) {
        let deadline = Instant::now() + TIMEOUT;
        while self.closes.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = events
                .next(left)
                .unwrap_or_else(|| panic!("{} of {count} closes", self.closes.len()));
            self.take(event);
        }
    }
}

fn every_cause_is_reported_once_per_open(backend: BackendKind) {
    let (tx, events) = events();
    let server = start(
        backend,
        |b| {
            b.max_frame_size(64 << 10)
                .max_message_size(64 << 10)
                .ping_interval(Some(Duration::from_millis(300)))
                .pong_timeout(Duration::from_millis(300))
                .close_timeout(Duration::from_millis(300))
                .max_backpressure(1 << 20)
                .backpressure_policy(BackpressurePolicy::Close)
        },
        move || Echo::reporting(tx.clone()).with_commands(),
    );
    let addr = server.addr();
    let mut expected: Vec<(ConnId, u16, CloseCause)> = Vec::new();
    let mut reports = Reports::default();
    // Connections kept open (unread) until the end, so that nothing else ends them.
    let mut keep = Vec::new();

    let mut client = Client::connect(addr).unwrap();
    let id = reports.open(&events);
    client.close_handshake(4100, "peer").unwrap();
    expected.push((id, 4100, CloseCause::Peer));

    let mut client = Client::connect(addr).unwrap();
    let id = reports.open(&events);
    client.send_text("!close 4200 local").unwrap();
    assert_eq!(client.expect_close(4200), "local");
    client.close(4200, "").unwrap();
    client.expect_eof().unwrap();
    expected.push((id, 4200, CloseCause::Local));

    for error in ERRORS {
        let mut client = Client::connect(addr).unwrap();
        let id = reports.open(&events);
        client.send_raw(&breaking(error)).unwrap();
        let code = error.close_code().0;
        assert_eq!(client.expect_close(code), error.to_string(), "{error:?}");
        expected.push((id, code, CloseCause::Protocol(error)));
    }

    // A peer that stops answering (no pong, no frame) after the auto-ping.
    let silent = Client::connect(addr).unwrap();
    let id = reports.open(&events);
    expected.push((id, 1006, CloseCause::Timeout));
    keep.push(silent);

    // A peer that does not read: once the kernel's buffers are full (large
    // messages are written straight into them while they take more), the
    // queue passes its limit, the server sends 1008 and, unanswered, gives
    // up after the close timeout.
    let mut slow = Client::connect(addr).unwrap();
    let id = reports.open(&events);
    slow.send_text("!flood 512 65536").unwrap();
    expected.push((id, 1008, CloseCause::Backpressure));
    keep.push(slow);

    let mut client = Client::connect(addr).unwrap();
    let id = reports.open(&events);
    client.send_text("!terminate").unwrap();
    expected.push((id, 1006, CloseCause::Terminated));

    let client = Client::connect(addr).unwrap();
    let id = reports.open(&events);
    client.reset();
    expected.push((id, 1006, CloseCause::Reset));

    let client = Client::connect(addr).unwrap();
    let id = reports.open(&events);
    client.stream().shutdown(Shutdown::Write).unwrap();
    expected.push((id, 1006, CloseCause::Reset));
    keep.push(client);

    // Wait for all of those before shutting down.
    reports.wait_for(&events, expected.len());

    // Shutdown: one peer answers the 1001, one does not.
    let mut polite = Client::connect(addr).unwrap();
    let polite_id = reports.open(&events);
    let rude = Client::connect(addr).unwrap();
    let rude_id = reports.open(&events);
    let answer = thread::spawn(move || {
        assert_eq!(polite.msg(), Msg::close(1001, "server shutdown"));
        polite.close(1001, "").unwrap();
        polite.expect_eof().unwrap();
    });
    server.shutdown(Duration::from_millis(500));
    answer.join().unwrap();
    drop(rude);
    expected.push((polite_id, 1001, CloseCause::Shutdown));
    expected.push((rude_id, 1001, CloseCause::Shutdown));
    // The workers are joined: every report is in.
    for event in events.take_all() {
        reports.take(event);
    }
    let mut closes = reports.closes;

    for (id, code, cause) in &expected {
        let reports = closes.remove(id).unwrap_or_default();
        assert_eq!(reports.len(), 1, "{id}: {cause:?} reported {reports:?}");
        let (got_code, _, got_cause) = &reports[0];
        assert_eq!((got_code, got_cause), (code, cause), "{id}");
    }
    assert!(closes.is_empty(), "closes without an open: {closes:?}");
    drop(keep);
}

ringws_tests::backend_tests! { every_cause_is_reported_once_per_open }
