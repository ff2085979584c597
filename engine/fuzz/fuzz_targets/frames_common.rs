// Shared by the frame fuzz targets: the first two input bytes pick where the
// stream is cut into reads; the rest is the stream. Checks that decoding never
// panics, always makes progress, and that a split stream decodes exactly like the
// whole one (same events, same error).

use ringws::proto::Role;
use ringws::proto::message::{Decoder, DecoderConfig, Event};

#[derive(Debug, PartialEq)]
enum Owned {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
    Compressed(bool, Vec<u8>),
}

fn run(config: &DecoderConfig, reads: &[&[u8]]) -> (Vec<Owned>, Option<String>) {
    let mut decoder = Decoder::new();
    let mut events = Vec::new();
    for read in reads {
        let mut buf = read.to_vec();
        let mut pos = 0;
        while pos < buf.len() {
            match decoder.decode(config, &mut buf[pos..]) {
                Ok((n, event)) => {
                    assert!(n > 0 || event.is_some(), "no progress");
                    pos += n;
                    events.extend(event.map(|e| match e {
                        Event::Text(t) => Owned::Text(t.to_owned()),
                        Event::Binary(b) => Owned::Binary(b.to_vec()),
                        Event::Ping(p) => Owned::Ping(p.to_vec()),
                        Event::Pong(p) => Owned::Pong(p.to_vec()),
                        Event::Close(c) => Owned::Close(c.map(|c| (c.code.0, c.reason.to_owned()))),
                        Event::Compressed { text, payload } => {
                            Owned::Compressed(text, payload.to_vec())
                        }
                    }));
                }
                Err(e) => {
                    let _ = e.close_code();
                    return (events, Some(e.to_string()));
                }
            }
        }
        decoder.release_buffers();
    }
    (events, None)
}

pub fn check(role: Role, data: &[u8]) {
    let [a, b, stream @ ..] = data else { return };
    // Small limits so the fuzzer reaches them.
    let mut config = DecoderConfig::new(role, 4096);
    // As with permessage-deflate negotiated: RSV1 marks compressed messages.
    config.rules.allowed_rsv = ringws::proto::frame::RSV1;
    let mut cuts = [
        usize::from(*a) % (stream.len() + 1),
        usize::from(*b) * 7 % (stream.len() + 1),
    ];
    cuts.sort_unstable();
    let whole = run(&config, &[stream]);
    let split = run(
        &config,
        &[
            &stream[..cuts[0]],
            &stream[cuts[0]..cuts[1]],
            &stream[cuts[1]..],
        ],
    );
    match (&whole.1, &split.1) {
        // An invalid stream may fail earlier when split (fail-fast UTF-8 sees less
        // context at once), but must fail, with events delivered before it a prefix.
        (Some(_), Some(_)) => {
            let n = whole.0.len().min(split.0.len());
            assert_eq!(whole.0[..n], split.0[..n]);
        }
        _ => assert_eq!(whole, split),
    }
}
