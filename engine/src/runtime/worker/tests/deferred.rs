//! Upgrades whose decision the handler deferred.

use super::*;
use crate::runtime::metrics::Format;

const DEFER: &[u8] = b"GET /defer?token=7 HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, superchat\r\n\
Authorization: Bearer seven\r\n\r\n";

impl Harness {
    /// Accepts a connection and sends a request whose upgrade the handler
    /// defers: its key and the pending upgrade.
    fn deferred(&mut self) -> (usize, PendingUpgrade<()>) {
        let key = self.accept();
        self.send_raw(key, DEFER);
        self.turn();
        let pending = self.seen.2.borrow_mut().pop().expect("deferred");
        (key, pending)
    }

    fn counter(&self, name: &str) -> u64 {
        let text = self.worker.shared.metrics.render(Format::Prometheus);
        text.lines()
            .find(|line| line.starts_with(&format!("{name}_total{{")))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

#[test]
fn a_deferred_upgrade_opens_when_accepted_and_reads_the_frames_sent_behind_it() {
    let mut h = Harness::new(config());
    let key = h.accept();
    let mut bytes = DEFER.to_vec();
    let frame = h.text_wire(key, "early");
    bytes.extend_from_slice(&frame);
    h.send_raw(key, &bytes);
    h.turn();
    assert!(
        h.socket(key).wire.is_empty(),
        "no answer before the decision"
    );
    let pending = h.seen.2.borrow_mut().pop().expect("deferred");
    // An owned copy of the request, for another thread.
    assert_eq!(pending.method(), "GET");
    assert_eq!(pending.path(), "/defer");
    assert_eq!(pending.query(), Some("token=7"));
    assert_eq!(pending.header("authorization"), Some("Bearer seven"));
    assert_eq!(pending.protocols(), ["chat", "superchat"]);
    assert_eq!(pending.peer_addr(), "127.0.0.1:40000".parse().unwrap());
    let id = pending.id();
    std::thread::spawn(move || pending.complete(Upgrade::accept(()).protocol("superchat")))
        .join()
        .unwrap()
        .unwrap();
    h.turn();
    let wire = String::from_utf8_lossy(&h.socket(key).wire).into_owned();
    assert!(wire.starts_with("HTTP/1.1 101"), "{wire}");
    assert!(
        wire.contains("Sec-WebSocket-Protocol: superchat\r\n"),
        "{wire}"
    );
    let head_len = wire.find("\r\n\r\n").unwrap() + 4;
    h.clients.get_mut(&key).unwrap().3 = head_len;
    assert_eq!(h.frames(key), [Frame::Text("early".into())]);
    assert_eq!(
        h.seen.take(),
        [Seen::Open(id), Seen::Message(id, "early".into())]
    );
    assert_eq!(h.counter("ringws_upgrades_deferred"), 1);
    assert_eq!(h.counter("ringws_deferred_upgrades_accepted"), 1);
    assert_eq!(h.counter("ringws_upgraded"), 1);
}

#[test]
fn a_deferred_upgrade_refused_gets_the_response_and_no_open() {
    let mut h = Harness::new(config());
    let (key, pending) = h.deferred();
    pending.reject(401, "bad token\n").unwrap();
    h.turn();
    let wire = String::from_utf8_lossy(&h.socket(key).wire).into_owned();
    assert!(wire.starts_with("HTTP/1.1 401"), "{wire}");
    assert!(wire.ends_with("bad token\n"), "{wire}");
    assert!(h.socket(key).write_shut);
    assert!(h.seen.take().is_empty());
    assert_eq!(h.counter("ringws_deferred_upgrades_rejected"), 1);
}

#[test]
fn an_undecided_upgrade_gets_503_at_the_handshake_timeout_and_a_late_decision_an_error() {
    let mut h = Harness::new(config());
    let (key, pending) = h.deferred();
    h.run_for(1990);
    assert!(h.socket(key).wire.is_empty(), "still waiting");
    // Within a tick (500 ms) after the timeout.
    h.run_for(510);
    let wire = String::from_utf8_lossy(&h.socket(key).wire).into_owned();
    assert!(wire.starts_with("HTTP/1.1 503"), "{wire}");
    assert!(h.socket(key).write_shut);
    assert_eq!(pending.accept(()), Err(UpgradeError::Expired));
    assert_eq!(h.counter("ringws_deferred_upgrades_expired"), 1);
    assert_eq!(h.worker.shared.pending_upgrades, 0);
}

#[test]
fn a_client_gone_while_pending_frees_its_slot_at_once() {
    let mut h = Harness::new(Config {
        max_pending_upgrades: 1,
        ..config()
    });
    let (key, first) = h.deferred();
    h.worker.on_hangup(key, Hangup::Error);
    h.turn();
    assert_eq!(h.worker.shared.pending_upgrades, 0);
    assert_eq!(first.accept(()), Err(UpgradeError::Gone));
    assert_eq!(h.counter("ringws_deferred_upgrades_abandoned"), 1);
    // Its slot is free: the next one waits too, and opens.
    let (key, second) = h.deferred();
    assert!(h.socket(key).wire.is_empty());
    second.accept(()).unwrap();
    h.turn();
    assert!(h.socket(key).wire.starts_with(b"HTTP/1.1 101"));
}

#[test]
fn past_max_pending_upgrades_a_deferred_request_gets_503() {
    let mut h = Harness::new(Config {
        max_pending_upgrades: 2,
        ..config()
    });
    let waiting: Vec<_> = (0..2).map(|_| h.deferred()).collect();
    let key = h.accept();
    h.send_raw(key, DEFER);
    h.turn();
    let wire = String::from_utf8_lossy(&h.socket(key).wire).into_owned();
    assert!(wire.starts_with("HTTP/1.1 503"), "{wire}");
    assert!(h.seen.2.borrow().is_empty(), "the handler never got it");
    assert_eq!(h.counter("ringws_deferred_upgrades_refused"), 1);
    for (key, pending) in waiting {
        pending.accept(()).unwrap();
        h.turn();
        assert!(h.socket(key).wire.starts_with(b"HTTP/1.1 101"));
    }
}

#[test]
fn a_pending_upgrade_dropped_undecided_answers_500() {
    let mut h = Harness::new(config());
    let (key, pending) = h.deferred();
    drop(pending);
    h.turn();
    assert!(h.socket(key).wire.starts_with(b"HTTP/1.1 500"));
    assert!(h.seen.take().is_empty());
}

#[test]
fn a_client_that_sends_too_much_while_pending_gets_503() {
    let mut h = Harness::new(config());
    let (key, pending) = h.deferred();
    h.send_raw(key, &vec![0x81; crate::runtime::deferred::HELD_MAX + 1]);
    h.turn();
    assert!(h.socket(key).wire.starts_with(b"HTTP/1.1 503"));
    assert_eq!(pending.accept(()), Err(UpgradeError::Gone));
    assert_eq!(h.worker.shared.pending_upgrades, 0);
}

#[test]
fn a_subprotocol_not_offered_is_refused_with_500_after_a_deferred_decision() {
    let mut h = Harness::new(config());
    let (key, pending) = h.deferred();
    pending
        .complete(Upgrade::accept(()).protocol("other"))
        .unwrap();
    h.turn();
    assert!(h.socket(key).wire.starts_with(b"HTTP/1.1 500"));
}
