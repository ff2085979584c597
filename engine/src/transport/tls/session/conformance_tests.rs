//! What a TLS conformance suite checks and the other tests did not: a
//! ClientHello fragmented into many records, a KeyUpdate that arrives with the
//! client's Finished, the alerts RFC 8446 §5.1 and §6 prescribe, bounds under
//! hostile control records, and the end of a session.

use std::io::{Read, Write};

use super::super::records::{CLOSE_RESERVE, MAX_FRAGMENT, alert};
use super::tests::{
    ClosedByPeer, Pair, Raw, SUITES, Sink, VERSIONS, feed, server_and_roots, take_wire,
};
use super::*;

/// The ClientHello in `first_flight` (one record, as rustls sends it), with a
/// padding extension (RFC 7685) of `pad` bytes first among its extensions when
/// `pad` is not 0: (the record's legacy version, the handshake message).
fn client_hello(first_flight: &[u8], pad: usize) -> ([u8; 2], Vec<u8>) {
    assert_eq!(first_flight[0], super::super::records::HANDSHAKE);
    let version = [first_flight[1], first_flight[2]];
    let len = usize::from(u16::from_be_bytes([first_flight[3], first_flight[4]]));
    let mut message = first_flight[5..5 + len].to_vec();
    assert_eq!(message[0], 1, "a ClientHello");
    if pad == 0 {
        return (version, message);
    }
    // type, length, legacy_version, random, then three length-prefixed lists.
    let mut at = 4 + 2 + 32;
    at += 1 + usize::from(message[at]);
    at += 2 + usize::from(u16::from_be_bytes([message[at], message[at + 1]]));
    at += 1 + usize::from(message[at]);
    let extensions = usize::from(u16::from_be_bytes([message[at], message[at + 1]]));
    let mut padding = vec![0, 21];
    padding.extend_from_slice(&(pad as u16).to_be_bytes());
    padding.resize(4 + pad, 0);
    message.splice(at + 2..at + 2, padding);
    message[at..at + 2].copy_from_slice(&((extensions + 4 + pad) as u16).to_be_bytes());
    let body = (message.len() - 4) as u32;
    message[1..4].copy_from_slice(&body.to_be_bytes()[1..]);
    (version, message)
}

/// `message` as handshake records of at most `size` bytes each.
fn fragmented(version: [u8; 2], message: &[u8], size: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    for chunk in message.chunks(size) {
        bytes.extend_from_slice(&[22, version[0], version[1]]);
        bytes.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        bytes.extend_from_slice(chunk);
    }
    bytes
}

/// The server's first answer is a ServerHello (a handshake record whose
/// message is of type 2).
fn is_server_hello(wire: &[u8]) -> bool {
    wire.len() > 5 && wire[0] == 22 && wire[5] == 2
}

#[test]
fn a_client_hello_fragmented_into_small_records_is_answered() {
    for versions in VERSIONS {
        for size in [1, 20, 127, 256] {
            for pad in [0, 20, 1000, 4096] {
                for read in [1 << 20, 7, 4096] {
                    let mut p = Pair::new(versions);
                    let (version, message) = client_hello(&p.client_bytes(), pad);
                    let mut bytes = fragmented(version, &message, size);
                    let case = format!("{versions:?} records of {size}, pad {pad}, reads {read}");
                    assert_eq!(p.feed(&mut bytes, read), Ok(Received::Open), "{case}");
                    if pad == 0 {
                        // The same hello: the handshake completes and data flows.
                        p.server_to_client();
                        p.handshake(1 << 20);
                        p.client.writer().write_all(b"after").unwrap();
                        assert_eq!(p.client_to_server(1 << 20), Ok(Received::Open));
                        assert_eq!(p.sink.got, b"after", "{case}");
                    } else {
                        assert!(is_server_hello(&p.wire()), "{case}");
                    }
                }
            }
        }
    }
}

/// A plaintext alert record of `description`, as sent before the handshake
/// has keys.
fn plain_alert(wire: &[u8]) -> Option<u8> {
    match wire {
        [21, 3, _, 0, 2, 2, description] => Some(*description),
        _ => None,
    }
}

#[test]
fn a_client_hello_that_never_ends_is_cut_with_an_alert() {
    // Announced as 60,000 bytes (under rustls's 64 KiB), sent in records of one
    // byte: six bytes on the wire for each byte of the message.
    let mut message = vec![1, 0, 0xea, 0x60];
    message.resize(4 + 60_000, 0x41);
    // And one past what a handshake message may be.
    let mut huge = vec![1, 0xff, 0xff, 0xff];
    huge.resize(70_000, 0x41);
    for (what, message, size) in [
        ("60,000 B in 1 B records", &message, 1),
        ("16 MiB announced, 16 KiB records", &huge, 1 << 14),
        ("16 MiB announced, 1 B records", &huge, 1),
    ] {
        let (config, _) = server_and_roots();
        let mut server = Tls::new(config);
        let mut sink = Sink::default();
        let bytes = fragmented([3, 1], message, size);
        let mut result = Ok(Received::Open);
        for read in bytes.chunks(4096) {
            result = feed(&mut server, &mut sink, read);
            assert!(server.stash.len() <= MAX_STASH, "{what}");
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(TlsError::Handshake), "{what}");
        let wire = take_wire(&mut server, &mut sink.pool);
        let alert = plain_alert(&wire);
        assert!(
            matches!(alert, Some(alert::DECODE_ERROR | alert::ILLEGAL_PARAMETER)),
            "{what}: {wire:?}"
        );
    }
}

#[test]
fn a_key_update_that_comes_with_the_clients_finished_is_answered_first() {
    for (version, suite) in &SUITES[..3] {
        let mut p = Pair::with_suite(version, *suite);
        // ClientHello, and the server's flight back.
        assert_eq!(p.client_to_server(1 << 20), Ok(Received::Open));
        p.server_to_client();
        // Finished, KeyUpdate(update_requested) and data, in one read.
        p.client.refresh_traffic_keys().unwrap();
        p.client.writer().write_all(b"data").unwrap();
        assert_eq!(p.client_to_server(1 << 20), Ok(Received::Open));
        assert_eq!(p.sink.got, b"data", "{suite:?}");
        let mut outbox = Outbox::default();
        outbox.push_copy(&mut p.sink.pool, b"reply", b"");
        assert_eq!(p.server.encrypt(&mut outbox, &mut p.sink.pool), Ok(true));
        // The client reads our KeyUpdate, then the reply under the new key.
        let wire = p.wire();
        let mut rest = &wire[..];
        while !rest.is_empty() {
            p.client.read_tls(&mut rest).unwrap();
            p.client
                .process_new_packets()
                .unwrap_or_else(|e| panic!("{suite:?}: {e}"));
        }
        let mut got = Vec::new();
        let _ = p.client.reader().read_to_end(&mut got);
        assert_eq!(got, b"reply", "{suite:?}");
    }
}

/// Two alerts of the record layer, as the client opens them.
fn alert_of(server: &mut Tls, sink: &mut Sink, raw: &mut Raw) -> Vec<(u8, Vec<u8>)> {
    let sent = take_wire(server, &mut sink.pool);
    raw.open_all(&sent)
}

#[test]
fn alert_records_of_the_wrong_length_get_the_alerts_rfc_8446_names() {
    for (version, suite) in [SUITES[0], SUITES[3]] {
        // Empty: unexpected_message (§5.1: no zero-length fragments but of
        // application data); one byte, or two alerts in one record:
        // decode_error (§6: a message of the wrong length).
        for (plain, answer) in [
            (&[][..], alert::UNEXPECTED_MESSAGE),
            (&[1][..], alert::DECODE_ERROR),
            (&[1, 90, 1, 90][..], alert::DECODE_ERROR),
            (&[1, 0, 1, 0][..], alert::DECODE_ERROR),
        ] {
            let (mut server, mut sink, mut raw) = Pair::raw(version, suite);
            let record = raw.seal(21, plain);
            assert_eq!(
                feed(&mut server, &mut sink, &record),
                Err(TlsError::Record),
                "{suite:?} {plain:?}"
            );
            assert_eq!(
                alert_of(&mut server, &mut sink, &mut raw),
                [(21, vec![2, answer])],
                "{suite:?} {plain:?}"
            );
        }
        // A zero-length handshake record: unexpected_message.
        let (mut server, mut sink, mut raw) = Pair::raw(version, suite);
        let record = raw.seal(22, &[]);
        assert_eq!(
            feed(&mut server, &mut sink, &record),
            Err(TlsError::Record),
            "{suite:?}"
        );
        assert_eq!(
            alert_of(&mut server, &mut sink, &mut raw),
            [(21, vec![2, alert::UNEXPECTED_MESSAGE])],
            "{suite:?}"
        );
    }
}

#[test]
fn an_oversized_record_header_cut_across_reads_gets_record_overflow() {
    for (version, suite) in [SUITES[0], SUITES[3]] {
        for cut in 4..=5 {
            let (mut server, mut sink, mut raw) = Pair::raw(version, suite);
            let header = [23, 3, 3, 0xff, 0xff];
            assert_eq!(
                feed(&mut server, &mut sink, &header[..cut]),
                if cut < 5 {
                    Ok(Received::Open)
                } else {
                    Err(TlsError::Record)
                },
                "{suite:?} cut {cut}"
            );
            if cut < 5 {
                assert_eq!(
                    feed(&mut server, &mut sink, &header[cut..]),
                    Err(TlsError::Record)
                );
            }
            assert_eq!(
                alert_of(&mut server, &mut sink, &mut raw),
                [(21, vec![2, alert::RECORD_OVERFLOW])],
                "{suite:?} cut {cut}"
            );
        }
    }
}

#[test]
fn tls12_records_must_carry_version_3_3() {
    for legacy in [[3, 1], [3, 2], [3, 4], [2, 0]] {
        let (mut server, mut sink, mut raw) = Pair::raw(SUITES[3].0, SUITES[3].1);
        let mut record = raw.seal(23, b"data");
        record[1..3].copy_from_slice(&legacy);
        assert_eq!(
            feed(&mut server, &mut sink, &record),
            Err(TlsError::Record),
            "{legacy:?}"
        );
        assert!(sink.got.is_empty());
        let answer = if legacy[0] == 3 {
            alert::PROTOCOL_VERSION
        } else {
            alert::DECODE_ERROR
        };
        assert_eq!(
            alert_of(&mut server, &mut sink, &mut raw),
            [(21, vec![2, answer])],
            "{legacy:?}"
        );
    }
}

#[test]
fn many_key_update_requests_are_answered_by_one_key_update() {
    let mut p = Pair::new(VERSIONS[0]);
    p.handshake(1 << 20);
    p.server_to_client();
    // A client that asks again and again (under the budget) before reading:
    // one KeyUpdate answers them all (RFC 8446 §4.6.3).
    for _ in 0..20 {
        p.client.refresh_traffic_keys().unwrap();
    }
    assert_eq!(p.client_to_server(1 << 20), Ok(Received::Open));
    let wire = p.wire();
    let record = 5 + usize::from(u16::from_be_bytes([wire[3], wire[4]]));
    assert_eq!(wire.len(), record, "one record: {} bytes", wire.len());
    // The client follows it, and our data under the new key reads.
    let mut rest = &wire[..];
    p.client.read_tls(&mut rest).unwrap();
    p.client.process_new_packets().unwrap();
    let mut outbox = Outbox::default();
    outbox.push_copy(&mut p.sink.pool, b"after", b"");
    assert_eq!(p.server.encrypt(&mut outbox, &mut p.sink.pool), Ok(true));
    assert_eq!(p.server_to_client(), b"after");
    // While our answer waits for the socket, more requests add nothing.
    for _ in 0..2 {
        p.client.refresh_traffic_keys().unwrap();
        p.client.writer().write_all(b"x").unwrap();
        assert_eq!(p.client_to_server(1 << 20), Ok(Received::Open));
    }
    let wire = p.wire();
    let record = 5 + usize::from(u16::from_be_bytes([wire[3], wire[4]]));
    assert_eq!(wire.len(), record, "one record: {} bytes", wire.len());
}

#[test]
fn empty_records_do_not_refill_the_key_update_budget_and_are_capped() {
    // rustls's client moves its keys as often as the budget allows, then
    // hands them to the test, which sends an empty record of data and one
    // more KeyUpdate: an empty record is not data, so the budget stays spent.
    let mut p = Pair::with_suite(SUITES[0].0, SUITES[0].1);
    p.handshake(1 << 20);
    p.server_to_client();
    for _ in 0..32 {
        p.client.refresh_traffic_keys().unwrap();
    }
    assert_eq!(p.client_to_server(1 << 20), Ok(Received::Open));
    p.server_to_client();
    let Pair {
        mut server,
        client,
        mut sink,
        ..
    } = p;
    #[allow(deprecated)]
    let mut raw = Raw::new(client.dangerous_extract_secrets().unwrap(), true);
    let mut bytes = raw.seal(23, b"");
    bytes.extend(raw.seal(22, &[24, 0, 0, 1, 0]));
    assert_eq!(feed(&mut server, &mut sink, &bytes), Err(TlsError::Record));
    assert_eq!(
        alert_of(&mut server, &mut sink, &mut raw),
        [(21, vec![2, alert::UNEXPECTED_MESSAGE])]
    );
    // A run of empty records alone is cut too.
    let (mut server, mut sink, mut raw) = Pair::raw(SUITES[3].0, SUITES[3].1);
    let mut result = Ok(Received::Open);
    for _ in 0..1000 {
        result = feed(&mut server, &mut sink, &raw.seal(23, b""));
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(TlsError::Record));
    assert_eq!(
        alert_of(&mut server, &mut sink, &mut raw),
        [(21, vec![2, alert::UNEXPECTED_MESSAGE])]
    );
    // Data between them starts the count again.
    let (mut server, mut sink, mut raw) = Pair::raw(SUITES[0].0, SUITES[0].1);
    for _ in 0..100 {
        for _ in 0..10 {
            assert_eq!(
                feed(&mut server, &mut sink, &raw.seal(23, b"")),
                Ok(Received::Open)
            );
        }
        assert_eq!(
            feed(&mut server, &mut sink, &raw.seal(23, b"x")),
            Ok(Received::Open)
        );
    }
}

#[test]
fn nothing_is_sealed_after_our_close_notify() {
    for versions in VERSIONS {
        let mut p = Pair::new(versions);
        p.handshake(1 << 20);
        p.server_to_client();
        assert!(p.server.close_notify(&mut p.sink.pool));
        let before = p.server.wire.len();
        let mut outbox = Outbox::default();
        outbox.push_copy(&mut p.sink.pool, b"too late", b"");
        assert_eq!(p.server.encrypt(&mut outbox, &mut p.sink.pool), Ok(false));
        assert_eq!(p.server.wire.len(), before);
        assert!(p.server_to_client().is_empty());
    }
}

#[test]
fn tls12_near_its_record_limit_asks_for_a_close_and_can_still_send_it() {
    let mut p = Pair::new(VERSIONS[1]);
    p.handshake(1 << 20);
    p.server_to_client();
    let (_, tx) = p.server.records().unwrap().seqs();
    p.server
        .records()
        .unwrap()
        .set_tx_limit(tx + CLOSE_RESERVE + 3);
    let mut outbox = Outbox::default();
    outbox.push_copy(&mut p.sink.pool, &[3; 2 * MAX_FRAGMENT], b"");
    assert_eq!(p.server.encrypt(&mut outbox, &mut p.sink.pool), Ok(true));
    assert!(!p.server.exhausted());
    outbox.push_copy(&mut p.sink.pool, &[4; 2 * MAX_FRAGMENT], b"");
    assert_eq!(p.server.encrypt(&mut outbox, &mut p.sink.pool), Ok(true));
    assert!(p.server.exhausted(), "the worker closes with 1001");
    // What was queued, the close frame and close_notify still go out.
    outbox.push_copy(&mut p.sink.pool, &[0x88, 2, 0x03, 0xe9], b"");
    assert_eq!(p.server.encrypt(&mut outbox, &mut p.sink.pool), Ok(true));
    assert!(p.server.close_notify(&mut p.sink.pool));
    let got = p.server_to_client();
    assert_eq!(got.len(), 4 * MAX_FRAGMENT + 4);
    assert!(got.ends_with(&[0x88, 2, 0x03, 0xe9]));
    assert!(p.client.received_close_notify_or_eof());
}

#[test]
fn a_fragmented_client_hello_is_held_compacted_and_answered_when_its_turn_comes() {
    for size in [1, 20, 256] {
        let mut p = Pair::new(VERSIONS[0]);
        let (version, message) = client_hello(&p.client_bytes(), 0);
        let bytes = fragmented(version, &message, size);
        for read in bytes.chunks(100) {
            assert!(p.server.hold(read), "records of {size}");
        }
        // One record, the message whole: what it says, not six times more.
        assert_eq!(
            p.server.stash.len(),
            HEADER + message.len(),
            "records of {size}"
        );
        let mut held = p.server.take_held();
        assert_eq!(p.feed(&mut held, 1 << 20), Ok(Received::Open));
        p.server_to_client();
        p.handshake(1 << 20);
        p.client.writer().write_all(b"held").unwrap();
        assert_eq!(p.client_to_server(1 << 20), Ok(Received::Open));
        assert_eq!(p.sink.got, b"held");
    }
    // Not handshake records, an empty handshake record, or too much: not held
    // (refused when received, or started at once).
    let (config, _) = server_and_roots();
    for bytes in [
        &b"GET / HTTP/1.1\r\n"[..],
        &[22, 3, 1, 0, 0][..],
        &[22, 3, 1, 0, 2, 1, 0, 23, 3, 3, 0, 1, 0][..],
        &[22, 3, 1, 0x40, 0][..],
    ] {
        let mut server = Tls::new(config.clone());
        assert!(!server.hold(bytes), "{bytes:?}");
        assert!(server.stash.is_empty());
    }
}

#[test]
fn an_application_config_loses_early_data_and_half_rtt_data() {
    let (config, _) = server_and_roots();
    let mut own = (*config).clone();
    own.max_early_data_size = 16 << 10;
    own.send_half_rtt_data = true;
    let own = Arc::new(own);
    let tls = crate::transport::tls::TlsConfig::from_rustls(own.clone());
    assert_eq!(tls.rustls().max_early_data_size, 0);
    assert!(!tls.rustls().send_half_rtt_data);
    assert!(tls.rustls().enable_secret_extraction);
    assert_eq!(
        own.max_early_data_size,
        16 << 10,
        "the application's copy is left alone"
    );
}

#[test]
fn a_record_cut_in_its_header_is_held_in_room_for_that_record_only() {
    let (mut server, mut sink, mut raw) = Pair::raw(SUITES[0].0, SUITES[0].1);
    let record = raw.seal(23, &[5; MAX_FRAGMENT]);
    // Cut in its header, then in reads that would grow a vector by doubling
    // past the record (9,000 bytes held, then 9,100: 18,000 of room).
    let mut rest = &record[..];
    for size in [3, 8997, 100, record.len()] {
        let (chunk, after) = rest.split_at(size.min(rest.len()));
        rest = after;
        assert_eq!(feed(&mut server, &mut sink, chunk), Ok(Received::Open));
        assert!(
            server.stash.capacity() <= record.len(),
            "{} held for a record of {}",
            server.stash.capacity(),
            record.len()
        );
    }
    assert_eq!(sink.got, [5; MAX_FRAGMENT]);
}

#[test]
fn after_our_close_notify_no_key_update_or_refusal_is_sealed() {
    for (version, suite) in [SUITES[0], SUITES[3]] {
        let (mut server, mut sink, mut raw) = Pair::raw(version, suite);
        assert!(server.close_notify(&mut sink.pool));
        let ours = take_wire(&mut server, &mut sink.pool);
        assert_eq!(raw.open_all(&ours), [(21, vec![1, 0])], "{suite:?}");
        // A KeyUpdate(update_requested), or a renegotiation attempt: taken,
        // and nothing answers it.
        let asked = if version.version == rustls::ProtocolVersion::TLSv1_3 {
            raw.seal(22, &[24, 0, 0, 1, 1])
        } else {
            raw.seal(22, &[1, 0, 0, 0])
        };
        assert_eq!(feed(&mut server, &mut sink, &asked), Ok(Received::Open));
        assert!(
            server.wire.is_empty(),
            "{suite:?}: sealed after close_notify"
        );
    }
}
