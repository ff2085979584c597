//! A session carried to another process (a live hand-over): rebuilt from
//! its state alone, it opens the client's next records and seals records
//! the client opens, on every suite of both versions; over TLS 1.3 it takes
//! one KeyUpdate each way, then ends the session at a second.

use std::io::Write;

use super::record_layer::SUITES;
use super::*;
use crate::transport::outbox::Outbox;

fn carried(p: &mut Pair) {
    let (records, wire) = p.server.carry().expect("an established session goes");
    assert!(wire.is_empty());
    // The old process's session is dropped; the new one has only the bytes.
    let partial = p.server.partial_record().to_vec();
    p.server = Tls::carried(&records, &wire, &partial, &mut p.sink.pool).expect("rebuilt");
}

fn round_trip(p: &mut Pair, text: &str) {
    p.client.writer().write_all(text.as_bytes()).unwrap();
    p.sink.got.clear();
    assert_eq!(p.client_to_server(3), Ok(Received::Open));
    assert_eq!(p.sink.got, text.as_bytes());
    let mut outbox = Outbox::default();
    outbox.push_copy(&mut p.sink.pool, b"reply ", text.as_bytes());
    assert_eq!(p.server.encrypt(&mut outbox, &mut p.sink.pool), Ok(true));
    assert_eq!(p.server_to_client(), format!("reply {text}").as_bytes());
}

#[test]
fn a_carried_session_reads_and_writes_on() {
    for (version, suite) in SUITES {
        let mut p = Pair::with_suite(version, suite);
        p.handshake(1 << 20);
        p.server_to_client();
        round_trip(&mut p, "before");
        carried(&mut p);
        round_trip(&mut p, "after");
        // And again: a connection handed over twice.
        carried(&mut p);
        round_trip(&mut p, "twice");
    }
}

#[test]
fn a_carried_tls13_session_takes_one_key_update_each_way() {
    for (version, suite) in &SUITES[..3] {
        let mut p = Pair::with_suite(version, *suite);
        p.handshake(1 << 20);
        p.server_to_client();
        carried(&mut p);
        // The client's KeyUpdate asks for ours: both next keys are used.
        p.client.refresh_traffic_keys().unwrap();
        round_trip(&mut p, "updated");
        round_trip(&mut p, "still");
        p.client.refresh_traffic_keys().unwrap();
        p.client.writer().write_all(b"again").unwrap();
        assert_eq!(p.client_to_server(3), Err(TlsError::Record), "{suite:?}");
    }
}

#[test]
fn a_record_cut_anywhere_travels_and_a_closing_session_is_refused() {
    let mut p = Pair::new(&[&rustls::version::TLS13]);
    p.handshake(1 << 20);
    p.server_to_client();
    p.client.writer().write_all(b"a record cut in two").unwrap();
    let whole = p.client_bytes();
    for cut in 1..whole.len() {
        let mut p = Pair::new(&[&rustls::version::TLS13]);
        p.handshake(1 << 20);
        p.server_to_client();
        p.client.writer().write_all(b"a record cut in two").unwrap();
        let mut bytes = p.client_bytes();
        p.sink.got.clear();
        assert_eq!(p.feed(&mut bytes[..cut], 1 << 20), Ok(Received::Open));
        assert!(p.sink.got.is_empty(), "cut at {cut}");
        // The cut record goes with the keys; the rest opens in the new one.
        carried(&mut p);
        assert_eq!(p.feed(&mut bytes[cut..], 1 << 20), Ok(Received::Open));
        assert_eq!(p.sink.got, b"a record cut in two", "cut at {cut}");
    }
    let (records, wire) = p.server.carry().expect("established");
    // A whole record, or more than one record can hold, is not a cut one.
    for bad in [&whole[..], &[23, 3, 3, 0xff, 0xff][..], &[0; 20_000][..]] {
        assert!(Tls::carried(&records, &wire, bad, &mut p.sink.pool).is_err());
    }
    p.server.close_notify(&mut p.sink.pool);
    assert!(matches!(p.server.carry(), Err(NotNow::Refuse(_))));
}
