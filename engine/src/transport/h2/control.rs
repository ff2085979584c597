//! The frames of the connection's control (RFC 9113 §6.3-6.9): SETTINGS,
//! PING, GOAWAY, WINDOW_UPDATE, RST_STREAM, PRIORITY, PUSH_PROMISE and
//! unknown types, each whole (read where it lies, or gathered by the
//! reader). Answers go into the outbox; what the runtime must know comes
//! back as an event. Header blocks are `headers`'s.

use super::H2;
use super::frame::{self, ErrorCode, FrameHead, H2Error, MAX_WINDOW, flag, kind, setting};
use super::reader::Found;
use super::streams::Found as Place;
use crate::transport::outbox::{BufferPool, Outbox};

/// The big-endian u32 at `at` (callers check the payload's length first).
fn u32_at(payload: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([
        payload[at],
        payload[at + 1],
        payload[at + 2],
        payload[at + 3],
    ])
}

impl H2 {
    /// A whole frame other than DATA.
    pub(super) fn frame(
        &mut self,
        head: FrameHead,
        payload: &[u8],
        out: &mut Outbox,
        pool: &mut BufferPool,
        now: u64,
    ) -> Result<Option<Found>, H2Error> {
        match head.kind {
            kind::HEADERS => self.headers(head, payload, out, pool, now),
            kind::CONTINUATION => self.continuation(head, payload, out, pool, now),
            kind::SETTINGS => self.settings_frame(head, payload, out, pool, now),
            kind::PING => {
                if head.stream != 0 {
                    return Err(H2Error::protocol("PING on a stream"));
                }
                if head.len != 8 {
                    return Err(H2Error::frame_size("PING not 8 bytes"));
                }
                self.control_frame(now)?;
                if !head.has(flag::ACK) {
                    frame::write(out, pool, kind::PING, flag::ACK, 0, payload);
                }
                Ok(None)
            }
            kind::GOAWAY => {
                if head.stream != 0 {
                    return Err(H2Error::protocol("GOAWAY on a stream"));
                }
                if head.len < 8 {
                    return Err(H2Error::frame_size("GOAWAY shorter than 8 bytes"));
                }
                self.control_frame(now)?;
                self.received_goaway = true;
                let last_stream = u32_at(payload, 0) & 0x7fff_ffff;
                let code = ErrorCode(u32::from_be_bytes([
                    payload[4], payload[5], payload[6], payload[7],
                ]));
                Ok(Some(Found::GoAway { last_stream, code }))
            }
            kind::WINDOW_UPDATE => self.window_update(head, payload, out, pool, now),
            kind::RST_STREAM => {
                if head.stream == 0 {
                    return Err(H2Error::protocol("RST_STREAM on stream 0"));
                }
                if head.len != 4 {
                    return Err(H2Error::frame_size("RST_STREAM not 4 bytes"));
                }
                let place = self.streams.find(head.stream);
                if place == Place::Idle {
                    return Err(H2Error::protocol("RST_STREAM on an idle stream"));
                }
                if !self.resets.take(now) {
                    return Err(H2Error::calm("stream resets past the budget"));
                }
                if place != Place::Open {
                    return Ok(None);
                }
                self.streams.remove(head.stream, false);
                let code = ErrorCode(u32::from_be_bytes([
                    payload[0], payload[1], payload[2], payload[3],
                ]));
                Ok(Some(Found::Reset {
                    stream: head.stream,
                    code,
                    by_peer: true,
                }))
            }
            kind::PRIORITY => {
                if head.stream == 0 {
                    return Err(H2Error::protocol("PRIORITY on stream 0"));
                }
                self.control_frame(now)?;
                let bad = if head.len != 5 {
                    Some(ErrorCode::FRAME_SIZE_ERROR)
                } else {
                    let dependency = u32_at(payload, 0) & 0x7fff_ffff;
                    (dependency == head.stream).then_some(ErrorCode::PROTOCOL_ERROR)
                };
                match bad {
                    // A stream error only on a stream that is open: there is
                    // nothing to reset on one that is idle or closed.
                    Some(code) if self.streams.find(head.stream) == Place::Open => Ok(Some(
                        self.stream_error(head.stream, code, out, pool, now)?,
                    )),
                    _ => Ok(None),
                }
            }
            kind::PUSH_PROMISE => Err(H2Error::protocol("PUSH_PROMISE from a client")),
            // Unknown types are ignored (RFC 9113 §4.1), but count: they
            // cost a read and carry nothing.
            _ => {
                self.control_frame(now)?;
                Ok(None)
            }
        }
    }

    fn settings_frame(
        &mut self,
        head: FrameHead,
        payload: &[u8],
        out: &mut Outbox,
        pool: &mut BufferPool,
        now: u64,
    ) -> Result<Option<Found>, H2Error> {
        if head.stream != 0 {
            return Err(H2Error::protocol("SETTINGS on a stream"));
        }
        if head.has(flag::ACK) {
            if head.len != 0 {
                return Err(H2Error::frame_size("SETTINGS ACK with a payload"));
            }
            self.control_frame(now)?;
            if !self.settings_acked {
                self.settings_acked = true;
                // Streams opened before the ACK got at least 65,535: our
                // smaller window applies from now (RFC 9113 §6.9.2).
                let ours = i64::from(self.settings.initial_window_size);
                let shrink = (i64::from(frame::DEFAULT_WINDOW) - ours).max(0);
                for s in self.streams.iter_mut() {
                    s.recv_window -= shrink;
                }
            }
            return Ok(None);
        }
        if head.len % 6 != 0 {
            return Err(H2Error::frame_size("SETTINGS length not a multiple of 6"));
        }
        self.control_frame(now)?;
        self.got_settings = true;
        let mut grew = false;
        for (id, value) in frame::settings_params(payload) {
            frame::check_setting(id, value)?;
            match id {
                setting::INITIAL_WINDOW_SIZE => {
                    let delta = i64::from(value) - i64::from(self.peer_initial_window);
                    for s in self.streams.iter_mut() {
                        s.send_window += delta;
                        if s.send_window > MAX_WINDOW {
                            return Err(H2Error::flow(
                                "SETTINGS_INITIAL_WINDOW_SIZE overflows a window",
                            ));
                        }
                    }
                    self.peer_initial_window = value;
                    grew |= delta > 0;
                }
                setting::MAX_FRAME_SIZE => self.peer_max_frame = value,
                _ => {}
            }
        }
        frame::write(out, pool, kind::SETTINGS, flag::ACK, 0, &[]);
        Ok(grew.then_some(Found::Window { stream: 0 }))
    }

    fn window_update(
        &mut self,
        head: FrameHead,
        payload: &[u8],
        out: &mut Outbox,
        pool: &mut BufferPool,
        now: u64,
    ) -> Result<Option<Found>, H2Error> {
        if head.len != 4 {
            return Err(H2Error::frame_size("WINDOW_UPDATE not 4 bytes"));
        }
        self.control_frame(now)?;
        let increment = i64::from(u32_at(payload, 0) & 0x7fff_ffff);
        if head.stream == 0 {
            if increment == 0 {
                return Err(H2Error::protocol("WINDOW_UPDATE of 0 on the connection"));
            }
            self.conn_send += increment;
            if self.conn_send > MAX_WINDOW {
                return Err(H2Error::flow("connection window past 2^31-1"));
            }
            return Ok(Some(Found::Window { stream: 0 }));
        }
        match self.streams.find(head.stream) {
            Place::Idle => Err(H2Error::protocol("WINDOW_UPDATE on an idle stream")),
            Place::Closed { .. } => Ok(None),
            Place::Open => {
                let Some(s) = self.streams.get_mut(head.stream) else {
                    return Ok(None);
                };
                if increment == 0 {
                    return Ok(Some(self.stream_error(
                        head.stream,
                        ErrorCode::PROTOCOL_ERROR,
                        out,
                        pool,
                        now,
                    )?));
                }
                if s.send_window + increment > MAX_WINDOW {
                    return Ok(Some(self.stream_error(
                        head.stream,
                        ErrorCode::FLOW_CONTROL_ERROR,
                        out,
                        pool,
                        now,
                    )?));
                }
                s.send_window += increment;
                Ok(Some(Found::Window {
                    stream: head.stream,
                }))
            }
        }
    }
}
