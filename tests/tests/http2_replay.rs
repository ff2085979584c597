//! Autobahn's cases cannot run over HTTP/2 (RFC 8441), so this replays an
//! Autobahn-like table of frame-level cases (`ringws_tests::replay`:
//! framing, pings, reserved bits and opcodes, fragmentation, UTF-8, close
//! codes) over HTTP/2 streams, as a differential: the same client bytes go
//! over an HTTP/1.1 WebSocket and over a stream, and the two outcomes (the
//! messages echoed, the close frame, the end after it) must be equal, and
//! each must be what RFC 6455 says (so both cannot be wrong together).
//!
//! Over HTTP/2 the bytes are also cut into DATA frames at awkward sizes (1,
//! 7 and 16,384 bytes per piece of each WebSocket frame) and joined (several
//! WebSocket frames in one DATA frame). The cases of a batch run on
//! concurrent streams of one connection, their DATA interleaved; after each
//! violation the connection has no GOAWAY and another stream still echoes.
//! Both backends, plain TCP with prior knowledge and TLS with ALPN `h2`.

use std::io;

use ringws::{BackendKind, Builder, Http2};
use ringws_tests::h2::H2Client;
use ringws_tests::replay::{self, Case, Outcome, Split};
use ringws_tests::{Client, Echo, Msg, TestServer, backend_tests, is_disconnect, start};

/// Cases run at once, each on a stream of its own (the server allows 100).
const BATCH: usize = 40;

/// HTTP/2 on: by ALPN on TLS listeners (the default) and by prior knowledge
/// on plain ones.
fn h2_on(builder: Builder) -> Builder {
    builder.http2(Http2 {
        prior_knowledge: true,
        ..Http2::default()
    })
}

/// A server with HTTP/2 on and the plain [`Echo`] handler (no `!` commands:
/// every message is echoed).
fn echo_server(backend: BackendKind) -> TestServer {
    start(backend, |b| h2_on(b.ping_interval(None)), Echo::new)
}

/// Replays `case` over a WebSocket over HTTP/1.1 of its own: all its bytes
/// in one write, then reads up to the server's close and what follows it.
fn over_h1(server: &TestServer, case: &Case) -> Outcome {
    let mut outcome = Outcome::default();
    let mut client = match Client::connect(server.addr()) {
        Ok(client) => client,
        Err(e) => {
            outcome.error = Some(format!("connecting: {e}"));
            return outcome;
        }
    };
    if let Err(e) = client.send_raw(&case.bytes()) {
        outcome.error = Some(format!("writing: {e}"));
        return outcome;
    }
    loop {
        match client.recv() {
            Ok(Msg::Close(close)) => {
                outcome.received.push(Msg::Close(close));
                match client.recv() {
                    Ok(msg) => outcome.received.push(msg),
                    Err(e) if is_disconnect(&e) => outcome.ended = true,
                    Err(e) => outcome.error = Some(format!("after the close: {e}")),
                }
                return outcome;
            }
            Ok(msg) => outcome.received.push(msg),
            Err(e) => {
                outcome.error = Some(e.to_string());
                return outcome;
            }
        }
    }
}

/// Reads what the server sent on `stream` up to its close, then whether
/// END_STREAM follows (a reset without it is an error: HTTP/1.1's clean end
/// is END_STREAM's counterpart, RFC 8441 section 5). Our side ends after.
fn read_h2(client: &mut H2Client, stream: u32) -> Outcome {
    let mut outcome = Outcome::default();
    loop {
        match client.recv_ws(stream) {
            Ok(Msg::Close(close)) => {
                outcome.received.push(Msg::Close(close));
                match client.recv_ws(stream) {
                    Ok(msg) => outcome.received.push(msg),
                    Err(_) if client.stream_ended(stream) => outcome.ended = true,
                    Err(e) => outcome.error = Some(format!("no END_STREAM after the close: {e}")),
                }
                break;
            }
            Ok(msg) => outcome.received.push(msg),
            Err(e) => {
                outcome.error = Some(e.to_string());
                break;
            }
        }
    }
    // The stream ends our way too (as a client's TCP FIN would), so that the
    // server forgets it.
    if client.reset_code(stream).is_none()
        && let Err(e) = client.send_data(stream, &[], true)
    {
        outcome.error.get_or_insert(format!("ending our side: {e}"));
    }
    outcome
}

/// Replays `cases` on concurrent streams of `client`'s connection, cut as
/// `split` says, their pieces interleaved round by round; returns each
/// case's outcome. After each violation, `sentinel` must still echo and no
/// GOAWAY may have come (else a line in `failures`).
fn over_h2(
    client: &mut H2Client,
    sentinel: u32,
    cases: &[&Case],
    split: Split,
    failures: &mut Vec<String>,
) -> io::Result<Vec<Outcome>> {
    let mut streams = Vec::with_capacity(cases.len());
    for (i, _) in cases.iter().enumerate() {
        streams.push(client.websocket(&format!("/replay/{i}"))?);
    }
    let pieces: Vec<Vec<Vec<u8>>> = cases.iter().map(|c| split.pieces(c)).collect();
    let rounds = pieces.iter().map(Vec::len).max().unwrap_or(0);
    client.cork();
    for round in 0..rounds {
        for (&stream, pieces) in streams.iter().zip(&pieces) {
            if let Some(piece) = pieces.get(round) {
                client.send_data_in(stream, piece, split.data_size())?;
            }
        }
    }
    client.uncork()?;
    let mut outcomes = Vec::with_capacity(cases.len());
    for (case, &stream) in cases.iter().zip(&streams) {
        outcomes.push(read_h2(client, stream));
        if !case.is_violation() {
            continue;
        }
        if let Some(goaway) = client.goaway() {
            failures.push(format!("{}: GOAWAY after it: {goaway:?}", case.name));
        }
        let text = format!("still here after {}", case.name);
        client.send_ws_text(sentinel, &text)?;
        match client.recv_ws(sentinel) {
            Ok(Msg::Text(t)) if t == text => {}
            other => failures.push(format!(
                "{}: the sentinel stream got {other:?} instead of its echo",
                case.name
            )),
        }
    }
    Ok(outcomes)
}

/// Replays every case that `split` applies to over HTTP/1.1 and over
/// HTTP/2; each outcome must be RFC 6455's, and HTTP/2's equal to
/// HTTP/1.1's. Every failure is listed before the test fails.
fn replay(backend: BackendKind, split: Split) {
    let server = echo_server(backend);
    let cases: Vec<Case> = replay::cases()
        .into_iter()
        .filter(|c| split.applies(c))
        .collect();
    assert!(cases.len() > 60, "{} cases", cases.len());
    let mut failures = Vec::new();

    let h1: Vec<Outcome> = cases.iter().map(|c| over_h1(&server, c)).collect();
    for (case, outcome) in cases.iter().zip(&h1) {
        if let Err(e) = case.check(outcome) {
            failures.push(format!("HTTP/1.1 {e}"));
        }
    }

    let mut client = H2Client::connect(server.addr()).unwrap();
    let sentinel = client.websocket("/sentinel").unwrap();
    let all: Vec<(&Case, &Outcome)> = cases.iter().zip(&h1).collect();
    for batch in all.chunks(BATCH) {
        let batch_cases: Vec<&Case> = batch.iter().map(|(c, _)| *c).collect();
        let outcomes = over_h2(&mut client, sentinel, &batch_cases, split, &mut failures)
            .unwrap_or_else(|e| {
                panic!(
                    "HTTP/2 ({split:?}): the connection failed: {e}; so far:\n{}",
                    replay::report(&failures)
                )
            });
        for ((case, h1), h2) in batch.iter().zip(&outcomes) {
            if let Err(e) = case.check(h2) {
                failures.push(format!("HTTP/2 ({split:?}) {e}"));
            }
            if h2 != *h1 {
                failures.push(format!(
                    "{}: HTTP/2 ({split:?}) {h2:?} but HTTP/1.1 {h1:?}",
                    case.name
                ));
            }
        }
    }
    assert!(client.goaway().is_none(), "{:?}", client.goaway());
    let close = client.close_ws(sentinel, 1000, "").unwrap();
    assert_eq!(close, Some((1000, String::new())));
    assert!(
        failures.is_empty(),
        "{} failures over {} cases ({split:?}):\n{}",
        failures.len(),
        cases.len(),
        replay::report(&failures)
    );
}

/// Each WebSocket frame in its own DATA frames.
fn frames_in_their_own_data_frames(backend: BackendKind) {
    replay(backend, Split::Whole);
}

/// Each WebSocket frame cut into DATA frames of one byte.
fn frames_cut_into_one_byte_data_frames(backend: BackendKind) {
    replay(backend, Split::Each(1));
}

/// Each WebSocket frame cut into DATA frames of seven bytes.
fn frames_cut_into_seven_byte_data_frames(backend: BackendKind) {
    replay(backend, Split::Each(7));
}

/// Each WebSocket frame cut into DATA frames of 16,384 bytes.
fn frames_cut_into_16384_byte_data_frames(backend: BackendKind) {
    replay(backend, Split::Each(16_384));
}

/// A case's WebSocket frames joined: several in one DATA frame.
fn frames_joined_in_data_frames(backend: BackendKind) {
    replay(backend, Split::Joined);
}

backend_tests!(
    frames_in_their_own_data_frames,
    frames_cut_into_one_byte_data_frames,
    frames_cut_into_seven_byte_data_frames,
    frames_cut_into_16384_byte_data_frames,
    frames_joined_in_data_frames,
);
