//! Reading a connection, frame by frame (RFC 9113 §4-6): the client
//! preface, frame headers and payloads cut anywhere by reads. DATA payloads
//! are handed on where they lie, as they arrive; other frames are read
//! where they lie when whole, and gathered in one buffer (at most one
//! frame, at most our SETTINGS_MAX_FRAME_SIZE) only when a read cuts them.
//! Control frames are answered into the outbox as they are read.

use super::frame::{self, ErrorCode, FrameHead, H2Error, HEADER_LEN, flag, kind};
use super::streams::Found as Place;
use super::{BLOCK_SLACK, H2, KEEP_BUFFER, PREFACE, Request};
use crate::transport::outbox::{BufferPool, Outbox};

mod join;

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
    /// What the step after a DATA payload gave when it was not more of the
    /// same stream's DATA (see [`Reader::join_data`]): the next to return.
    after_data: Option<Result<Option<Found>, H2Error>>,
}

impl<'a> Reader<'a> {
    pub(super) fn new(h2: &'a mut H2, bytes: &'a mut [u8]) -> Self {
        Self {
            h2,
            bytes,
            pos: 0,
            after_data: None,
        }
    }

    /// The codec, between events: what the caller does on an event (a
    /// stream refused, DATA consumed) goes through it while the read goes on.
    /// Its sending calls leave where the read stands as it is.
    pub fn codec(&mut self) -> &mut H2 {
        self.h2
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
        let step = match self.after_data.take() {
            Some(step) => step,
            None => self.step(out, pool, now_ms).map(|found| match found {
                Some(Found::Data { stream, start, end }) => {
                    Some(self.join_data(stream, start, end, out, pool, now_ms))
                }
                other => other,
            }),
        };
        let found = match step {
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
        // After GOAWAY with an error the connection only closes: no stream
        // sends anything more (the runtime ends them all).
        self.streams.clear();
        frame::write_goaway(out, pool, self.last_accepted, error.code);
    }

    pub(super) fn control_frame(&mut self, now: u64) -> Result<(), H2Error> {
        if self.control.take(now) {
            Ok(())
        } else {
            Err(H2Error::calm("control frames past the budget"))
        }
    }

    /// A stream error on `stream`: RST_STREAM(code), counted in the reset
    /// budget; the stream (if kept) is forgotten and reported.
    pub(super) fn stream_error(
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
    pub(super) fn end_remote(
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
}
