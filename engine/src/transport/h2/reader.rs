//! Reading a connection, frame by frame (RFC 9113 §4-6): the client
//! preface, frame headers and payloads cut anywhere by reads. DATA payloads
//! are handed on where they lie, as they arrive; other frames are read
//! where they lie when whole, and gathered in one buffer (at most one
//! frame, at most our SETTINGS_MAX_FRAME_SIZE) only when a read cuts them.
//! Control frames are answered into the outbox as they are read.

use super::frame::{
    self, ErrorCode, FrameHead, H2Error, HEADER_LEN, MAX_WINDOW, flag, kind, setting,
};
use super::hpack::{Decoded, Target};
use super::streams::{Found as Place, Stream};
use super::{BLOCK_SLACK, H2, KEEP_BUFFER, MAX_CONTINUATIONS, PREFACE, Request};
use crate::transport::outbox::{BufferPool, Outbox};

/// Where reading stands between reads.
#[derive(Debug, Clone, Copy)]
pub(super) enum State {
    /// Bytes of the client preface matched so far.
    Preface(usize),
    /// A frame header, `have` bytes of it so far.
    Head { buf: [u8; HEADER_LEN], have: usize },
    /// A DATA frame's payload, handed on as it comes.
    Data(DataState),
    /// Another frame's payload, gathered in `H2::frame_buf`.
    Body(FrameHead),
    /// A connection error ended reading for good.
    Failed(H2Error),
}

#[derive(Debug, Clone, Copy)]
pub(super) struct DataState {
    stream: u32,
    end_stream: bool,
    /// Handed on (else skipped, and credited back to the connection).
    deliver: bool,
    /// The pad length byte is still to come.
    pad_pending: bool,
    data_left: u32,
    pad_left: u32,
}

/// What a header block being gathered will be once whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Disposition {
    /// A new stream's request.
    NewStream,
    /// A new stream refused with this code (decoded for HPACK only).
    Refuse(ErrorCode),
    /// Trailers of an open stream.
    Trailers,
    /// A block on an open stream that is a stream error once decoded.
    StreamError(ErrorCode),
    /// A block for a stream we reset: decoded for HPACK, then ignored.
    Ignore,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct PendingBlock {
    stream: u32,
    end_stream: bool,
    disposition: Disposition,
    frames: u32,
}

/// An event, before it borrows what it lends.
#[derive(Debug, Clone, Copy)]
pub(super) enum Found {
    Request {
        stream: u32,
        end_stream: bool,
    },
    Data {
        stream: u32,
        start: usize,
        end: usize,
    },
    End {
        stream: u32,
    },
    Reset {
        stream: u32,
        code: ErrorCode,
        by_peer: bool,
    },
    Window {
        stream: u32,
    },
    GoAway {
        last_stream: u32,
        code: ErrorCode,
    },
}

/// What one step of reading gave.
enum Flow {
    Event(Found),
    /// Progress; go on.
    Continue,
    /// The bytes are used up.
    Wait,
}

/// What a read gives, event by event.
#[derive(Debug)]
pub(crate) enum Event<'a> {
    /// A new stream's complete, validated request header block. `end_stream`:
    /// the request has no body.
    Request {
        stream: u32,
        request: &'a Request,
        end_stream: bool,
    },
    /// Payload bytes of a DATA frame, padding removed, mutable where they lie
    /// in the input; a frame cut by the end of a read comes as several
    /// events. Zero-length payloads are not reported.
    Data { stream: u32, bytes: &'a mut [u8] },
    /// The peer ended its side (END_STREAM on DATA or on trailers).
    End { stream: u32 },
    /// The stream was reset: by the peer's RST_STREAM (`by_peer`), or by us
    /// for its stream error (RST_STREAM already queued). It is forgotten.
    Reset {
        stream: u32,
        code: ErrorCode,
        by_peer: bool,
    },
    /// The peer's window grew: stream 0 = the connection (every stream may
    /// send more).
    Window { stream: u32 },
    /// The peer's GOAWAY.
    GoAway { last_stream: u32, code: ErrorCode },
}

/// One read of a connection ([`H2::read`]).
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    h2: &'a mut H2,
    bytes: &'a mut [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(h2: &'a mut H2, bytes: &'a mut [u8]) -> Self {
        Self { h2, bytes, pos: 0 }
    }
}

impl Reader<'_> {
    /// The next event, or None when the bytes are used up. Control frames
    /// are answered into `out`. A connection error queues GOAWAY(last
    /// stream, code) and returns Err; reading stops for good (later reads
    /// return the same Err without output). `now_ms` drives the budgets.
    pub fn next(
        &mut self,
        out: &mut Outbox,
        pool: &mut BufferPool,
        now_ms: u64,
    ) -> Result<Option<Event<'_>>, H2Error> {
        if let State::Failed(error) = self.h2.state {
            return Err(error);
        }
        self.h2.now_ms = now_ms;
        let found = match self.step(out, pool, now_ms) {
            Ok(found) => found,
            Err(error) => {
                self.h2.fail(error, out, pool);
                return Err(error);
            }
        };
        let Some(found) = found else {
            return Ok(None);
        };
        Ok(Some(match found {
            Found::Request { stream, end_stream } => Event::Request {
                stream,
                request: &self.h2.request,
                end_stream,
            },
            Found::Data { stream, start, end } => Event::Data {
                stream,
                bytes: &mut self.bytes[start..end],
            },
            Found::End { stream } => Event::End { stream },
            Found::Reset {
                stream,
                code,
                by_peer,
            } => Event::Reset {
                stream,
                code,
                by_peer,
            },
            Found::Window { stream } => Event::Window { stream },
            Found::GoAway { last_stream, code } => Event::GoAway { last_stream, code },
        }))
    }

    fn step(
        &mut self,
        out: &mut Outbox,
        pool: &mut BufferPool,
        now: u64,
    ) -> Result<Option<Found>, H2Error> {
        if self.h2.calm_owed {
            return Err(H2Error::calm("stream resets past the budget"));
        }
        loop {
            let flow = match self.h2.state {
                State::Failed(error) => return Err(error),
                State::Preface(matched) => self.preface(matched)?,
                State::Head { buf, have } => self.head(buf, have, out, pool, now)?,
                State::Data(data) => self.data(data, out, pool, now)?,
                State::Body(head) => self.body(head, out, pool, now)?,
            };
            match flow {
                Flow::Event(found) => return Ok(Some(found)),
                Flow::Continue => {}
                Flow::Wait => return Ok(None),
            }
        }
    }

    fn rest(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn preface(&mut self, matched: usize) -> Result<Flow, H2Error> {
        let take = (PREFACE.len() - matched).min(self.rest());
        if take == 0 {
            return Ok(Flow::Wait);
        }
        if self.bytes[self.pos..self.pos + take] != PREFACE[matched..matched + take] {
            return Err(H2Error::protocol("not the HTTP/2 client preface"));
        }
        self.pos += take;
        self.h2.state = if matched + take == PREFACE.len() {
            State::Head {
                buf: [0; HEADER_LEN],
                have: 0,
            }
        } else {
            State::Preface(matched + take)
        };
        Ok(Flow::Continue)
    }

    fn head(
        &mut self,
        mut buf: [u8; HEADER_LEN],
        have: usize,
        out: &mut Outbox,
        pool: &mut BufferPool,
        now: u64,
    ) -> Result<Flow, H2Error> {
        let take = (HEADER_LEN - have).min(self.rest());
        if take == 0 {
            return Ok(Flow::Wait);
        }
        buf[have..have + take].copy_from_slice(&self.bytes[self.pos..self.pos + take]);
        self.pos += take;
        if have + take < HEADER_LEN {
            self.h2.state = State::Head {
                buf,
                have: have + take,
            };
            return Ok(Flow::Wait);
        }
        let head = FrameHead::parse(&buf);
        self.h2.state = State::Head {
            buf: [0; HEADER_LEN],
            have: 0,
        };
        self.h2.check_head(&head)?;
        if head.kind == kind::DATA {
            return self.h2.data_begin(head, out, pool, now);
        }
        let len = head.len as usize;
        if self.rest() >= len {
            let payload = &self.bytes[self.pos..self.pos + len];
            self.pos += len;
            return Ok(flow(self.h2.frame(head, payload, out, pool, now)?));
        }
        self.h2.frame_buf.clear();
        self.h2.frame_buf.reserve_exact(len);
        self.h2.state = State::Body(head);
        Ok(Flow::Continue)
    }

    fn body(
        &mut self,
        head: FrameHead,
        out: &mut Outbox,
        pool: &mut BufferPool,
        now: u64,
    ) -> Result<Flow, H2Error> {
        let need = head.len as usize - self.h2.frame_buf.len();
        let take = need.min(self.rest());
        self.h2
            .frame_buf
            .extend_from_slice(&self.bytes[self.pos..self.pos + take]);
        self.pos += take;
        if take < need {
            return Ok(Flow::Wait);
        }
        self.h2.state = State::Head {
            buf: [0; HEADER_LEN],
            have: 0,
        };
        let mut payload = std::mem::take(&mut self.h2.frame_buf);
        let result = self.h2.frame(head, &payload, out, pool, now);
        payload.clear();
        if payload.capacity() <= KEEP_BUFFER {
            self.h2.frame_buf = payload;
        }
        Ok(flow(result?))
    }

    fn data(
        &mut self,
        mut data: DataState,
        out: &mut Outbox,
        pool: &mut BufferPool,
        now: u64,
    ) -> Result<Flow, H2Error> {
        let h2 = &mut *self.h2;
        let rest = self.bytes.len() - self.pos;
        // Credited as they pass: padding to the stream (when handed on) and
        // the connection, skipped data to the connection only.
        let owner = if data.deliver { data.stream } else { 0 };
        if data.pad_pending {
            if rest == 0 {
                return Ok(Flow::Wait);
            }
            let pad = u32::from(self.bytes[self.pos]);
            self.pos += 1;
            if pad > data.data_left {
                return Err(H2Error::protocol("DATA padding longer than the frame"));
            }
            data.pad_pending = false;
            data.data_left -= pad;
            data.pad_left = pad;
            h2.credit(owner, 1, out, pool);
            h2.state = State::Data(data);
            if data.deliver {
                if let Some(reset) = h2.charge_body(data.stream, data.data_left, out, pool, now)? {
                    data.deliver = false;
                    h2.state = State::Data(data);
                    return Ok(Flow::Event(reset));
                }
            }
            return Ok(Flow::Continue);
        }
        if data.data_left > 0 {
            let take = (data.data_left as usize).min(rest);
            if take == 0 {
                return Ok(Flow::Wait);
            }
            let start = self.pos;
            self.pos += take;
            data.data_left -= take as u32;
            // The runtime may have reset the stream since the frame began.
            data.deliver &= h2.streams.get(data.stream).is_some();
            h2.state = State::Data(data);
            if data.deliver {
                return Ok(Flow::Event(Found::Data {
                    stream: data.stream,
                    start,
                    end: self.pos,
                }));
            }
            h2.credit(0, take, out, pool);
            return Ok(Flow::Continue);
        }
        if data.pad_left > 0 {
            let take = (data.pad_left as usize).min(rest);
            if take == 0 {
                return Ok(Flow::Wait);
            }
            self.pos += take;
            data.pad_left -= take as u32;
            h2.state = State::Data(data);
            h2.credit(owner, take, out, pool);
            return Ok(Flow::Continue);
        }
        h2.state = State::Head {
            buf: [0; HEADER_LEN],
            have: 0,
        };
        if data.end_stream && data.deliver {
            return Ok(flow(h2.end_remote(data.stream, out, pool, now)?));
        }
        Ok(Flow::Continue)
    }
}

fn flow(found: Option<Found>) -> Flow {
    found.map_or(Flow::Continue, Flow::Event)
}

impl H2 {
    /// A connection error: reading stops, GOAWAY is queued (once per error:
    /// after a graceful GOAWAY, this second one carries the error).
    fn fail(&mut self, error: H2Error, out: &mut Outbox, pool: &mut BufferPool) {
        self.state = State::Failed(error);
        self.pending_block = None;
        self.block = Vec::new();
        self.frame_buf = Vec::new();
        self.sent_goaway = true;
        frame::write_goaway(out, pool, self.last_accepted, error.code);
    }

    fn control_frame(&mut self, now: u64) -> Result<(), H2Error> {
        if self.control.take(now) {
            Ok(())
        } else {
            Err(H2Error::calm("control frames past the budget"))
        }
    }

    /// A stream error on `stream`: RST_STREAM(code), counted in the reset
    /// budget; the stream (if kept) is forgotten and reported.
    fn stream_error(
        &mut self,
        stream: u32,
        code: ErrorCode,
        out: &mut Outbox,
        pool: &mut BufferPool,
        now: u64,
    ) -> Result<Found, H2Error> {
        if !self.resets.take(now) {
            return Err(H2Error::calm("stream errors past the reset budget"));
        }
        frame::write_rst(out, pool, stream, code);
        self.streams.remove(stream, true);
        Ok(Found::Reset {
            stream,
            code,
            by_peer: false,
        })
    }

    /// What a frame header alone tells: the first frame is SETTINGS, frames
    /// fit our SETTINGS_MAX_FRAME_SIZE, a header block is not interrupted
    /// and stays within its bounds.
    fn check_head(&mut self, head: &FrameHead) -> Result<(), H2Error> {
        if !self.got_settings && (head.kind != kind::SETTINGS || head.has(flag::ACK)) {
            return Err(H2Error::protocol("the first frame is not SETTINGS"));
        }
        if head.len > self.settings.max_frame_size {
            return Err(H2Error::frame_size(
                "frame larger than SETTINGS_MAX_FRAME_SIZE",
            ));
        }
        match self.pending_block {
            Some(p) if head.kind != kind::CONTINUATION || head.stream != p.stream => {
                return Err(H2Error::protocol("a frame inside a header block"));
            }
            None if head.kind == kind::CONTINUATION => {
                return Err(H2Error::protocol("CONTINUATION without HEADERS"));
            }
            _ => {}
        }
        if matches!(head.kind, kind::HEADERS | kind::CONTINUATION) {
            let bound = self.settings.max_header_list_size as usize + BLOCK_SLACK;
            if self.block.len() + head.len as usize > bound {
                return Err(H2Error::calm("header block too large"));
            }
        }
        Ok(())
    }

    /// A DATA frame's header: flow control charged for the whole frame
    /// (padding included), and what becomes of its payload decided.
    fn data_begin(
        &mut self,
        head: FrameHead,
        out: &mut Outbox,
        pool: &mut BufferPool,
        now: u64,
    ) -> Result<Flow, H2Error> {
        let id = head.stream;
        let place = self.streams.find(id);
        if id == 0 || place == Place::Idle {
            return Err(H2Error::protocol("DATA on an idle stream"));
        }
        let len = i64::from(head.len);
        if len > self.conn_recv {
            return Err(H2Error::flow("DATA past the connection window"));
        }
        self.conn_recv -= len;
        let padded = head.has(flag::PADDED);
        if padded && head.len == 0 {
            return Err(H2Error::protocol("padded DATA without a pad length"));
        }
        if head.len == 0 && !head.has(flag::END_STREAM) {
            self.control_frame(now)?;
        }
        let mut data = DataState {
            stream: id,
            end_stream: head.has(flag::END_STREAM),
            deliver: false,
            pad_pending: padded,
            data_left: head.len - u32::from(padded),
            pad_left: 0,
        };
        let mut found = None;
        match self.streams.get_mut(id) {
            None if place
                == (Place::Closed {
                    recently_reset: true,
                }) => {}
            None => {
                // Not ours to report: the stream is already forgotten.
                self.stream_error(id, ErrorCode::STREAM_CLOSED, out, pool, now)?;
            }
            Some(s) if s.remote_closed => {
                found = Some(self.stream_error(id, ErrorCode::STREAM_CLOSED, out, pool, now)?);
            }
            Some(s) if len > s.recv_window => {
                found =
                    Some(self.stream_error(id, ErrorCode::FLOW_CONTROL_ERROR, out, pool, now)?);
            }
            Some(s) => {
                s.recv_window -= len;
                data.deliver = true;
            }
        }
        self.state = State::Data(data);
        if data.deliver && !padded {
            if let Some(reset) = self.charge_body(id, data.data_left, out, pool, now)? {
                data.deliver = false;
                self.state = State::Data(data);
                found = Some(reset);
            }
        }
        Ok(flow(found))
    }

    /// Counts `n` bytes of body against the request's content-length: more
    /// than it said is a malformed request (a stream error).
    fn charge_body(
        &mut self,
        id: u32,
        n: u32,
        out: &mut Outbox,
        pool: &mut BufferPool,
        now: u64,
    ) -> Result<Option<Found>, H2Error> {
        let Some(s) = self.streams.get_mut(id) else {
            return Ok(None);
        };
        match s.body_left {
            Some(left) if u64::from(n) > left => Ok(Some(self.stream_error(
                id,
                ErrorCode::PROTOCOL_ERROR,
                out,
                pool,
                now,
            )?)),
            Some(left) => {
                s.body_left = Some(left - u64::from(n));
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// The peer's END_STREAM on `id`: its body must have been all the
    /// content-length said.
    fn end_remote(
        &mut self,
        id: u32,
        out: &mut Outbox,
        pool: &mut BufferPool,
        now: u64,
    ) -> Result<Option<Found>, H2Error> {
        let Some(s) = self.streams.get_mut(id) else {
            return Ok(None);
        };
        if s.body_left.is_some_and(|left| left > 0) {
            return Ok(Some(self.stream_error(
                id,
                ErrorCode::PROTOCOL_ERROR,
                out,
                pool,
                now,
            )?));
        }
        s.remote_closed = true;
        self.streams.forget_if_closed(id);
        Ok(Some(Found::End { stream: id }))
    }

    /// A whole frame other than DATA.
    fn frame(
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
                let last_stream =
                    u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                        & 0x7fff_ffff;
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
                    let dependency =
                        u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                            & 0x7fff_ffff;
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
        let increment = i64::from(
            u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & 0x7fff_ffff,
        );
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

    /// A HEADERS frame: what its block will be for is decided now (the
    /// stream's state when it began), its fragment gathered.
    fn headers(
        &mut self,
        head: FrameHead,
        payload: &[u8],
        out: &mut Outbox,
        pool: &mut BufferPool,
        now: u64,
    ) -> Result<Option<Found>, H2Error> {
        let id = head.stream;
        if id == 0 {
            return Err(H2Error::protocol("HEADERS on stream 0"));
        }
        let mut fragment = frame::unpad(payload, head.has(flag::PADDED))?;
        let mut self_dependent = false;
        if head.has(flag::PRIORITY) {
            if fragment.len() < 5 {
                return Err(H2Error::frame_size("HEADERS too short for its priority"));
            }
            let dependency =
                u32::from_be_bytes([fragment[0], fragment[1], fragment[2], fragment[3]])
                    & 0x7fff_ffff;
            self_dependent = dependency == id;
            fragment = &fragment[5..];
        }
        let end_stream = head.has(flag::END_STREAM);
        let mut disposition = match self.streams.find(id) {
            Place::Open => match self.streams.get(id) {
                Some(s) if s.remote_closed => Disposition::StreamError(ErrorCode::STREAM_CLOSED),
                _ if !end_stream => Disposition::StreamError(ErrorCode::PROTOCOL_ERROR),
                _ => Disposition::Trailers,
            },
            Place::Idle if id % 2 == 0 => {
                return Err(H2Error::protocol("HEADERS on an even stream id"));
            }
            Place::Idle => {
                self.streams.last_peer = id;
                if self.sent_goaway
                    || self.streams.len() >= self.settings.max_concurrent_streams as usize
                {
                    Disposition::Refuse(ErrorCode::REFUSED_STREAM)
                } else {
                    Disposition::NewStream
                }
            }
            Place::Closed {
                recently_reset: true,
            } => Disposition::Ignore,
            Place::Closed {
                recently_reset: false,
            } => {
                return Err(H2Error::new(
                    ErrorCode::STREAM_CLOSED,
                    "HEADERS on a closed stream",
                ));
            }
        };
        if self_dependent && disposition != Disposition::Ignore {
            disposition = match disposition {
                Disposition::NewStream | Disposition::Refuse(_) => {
                    Disposition::Refuse(ErrorCode::PROTOCOL_ERROR)
                }
                _ => Disposition::StreamError(ErrorCode::PROTOCOL_ERROR),
            };
        }
        self.block.clear();
        self.block.extend_from_slice(fragment);
        let pending = PendingBlock {
            stream: id,
            end_stream,
            disposition,
            frames: 1,
        };
        if head.has(flag::END_HEADERS) {
            return self.complete(pending, out, pool, now);
        }
        self.pending_block = Some(pending);
        Ok(None)
    }

    fn continuation(
        &mut self,
        head: FrameHead,
        payload: &[u8],
        out: &mut Outbox,
        pool: &mut BufferPool,
        now: u64,
    ) -> Result<Option<Found>, H2Error> {
        let Some(mut pending) = self.pending_block else {
            return Err(H2Error::protocol("CONTINUATION without HEADERS"));
        };
        pending.frames += 1;
        if pending.frames > MAX_CONTINUATIONS {
            return Err(H2Error::calm("too many CONTINUATION frames"));
        }
        if payload.is_empty() && !head.has(flag::END_HEADERS) {
            self.control_frame(now)?;
        }
        self.block.extend_from_slice(payload);
        if head.has(flag::END_HEADERS) {
            self.pending_block = None;
            return self.complete(pending, out, pool, now);
        }
        self.pending_block = Some(pending);
        Ok(None)
    }

    /// A whole header block: decoded (always: HPACK's table is shared),
    /// then what it was for.
    fn complete(
        &mut self,
        pending: PendingBlock,
        out: &mut Outbox,
        pool: &mut BufferPool,
        now: u64,
    ) -> Result<Option<Found>, H2Error> {
        let id = pending.stream;
        let target = match pending.disposition {
            Disposition::NewStream => Target::Request,
            Disposition::Trailers => Target::Trailers,
            _ => Target::Discard,
        };
        if target == Target::Request {
            self.request.trim(KEEP_BUFFER);
        }
        let block = std::mem::take(&mut self.block);
        let decoded = self.decoder.decode(&block, target, &mut self.request);
        self.block = block;
        self.block.clear();
        if self.block.capacity() > KEEP_BUFFER {
            self.block = Vec::new();
        }
        let decoded = decoded?;
        let code = match decoded {
            Decoded::Ok => None,
            Decoded::Malformed(_) => Some(ErrorCode::PROTOCOL_ERROR),
            // Refused, not malformed: the peer went past the limit we set.
            Decoded::TooLarge => Some(ErrorCode::REFUSED_STREAM),
        };
        match (pending.disposition, code) {
            (Disposition::Ignore, _) => Ok(None),
            (Disposition::Refuse(code), _) | (Disposition::StreamError(code), _) => {
                Ok(Some(self.stream_error(id, code, out, pool, now)?))
            }
            (_, Some(code)) => Ok(Some(self.stream_error(id, code, out, pool, now)?)),
            (Disposition::Trailers, None) => self.end_remote(id, out, pool, now),
            (Disposition::NewStream, None) => {
                let body = self.request.content_length();
                if pending.end_stream && body.is_some_and(|n| n > 0) {
                    return Ok(Some(self.stream_error(
                        id,
                        ErrorCode::PROTOCOL_ERROR,
                        out,
                        pool,
                        now,
                    )?));
                }
                let mut stream = Stream::new(
                    i64::from(self.peer_initial_window),
                    self.recv_initial(),
                    body,
                );
                stream.remote_closed = pending.end_stream;
                self.streams.insert(id, stream);
                self.last_accepted = id;
                Ok(Some(Found::Request {
                    stream: id,
                    end_stream: pending.end_stream,
                }))
            }
        }
    }
}
