//! The server side of an HTTP/2 connection (RFC 9113), sans-I/O, for
//! WebSockets over HTTP/2 (RFC 8441): plaintext bytes in, events out
//! ([`H2::read`] → [`Reader::next`] → [`Event`]), frames queued into the
//! caller's [`Outbox`]. It knows nothing of WebSocket, connections or
//! workers: a stream is an id, its request and its bytes.
//!
//! Modules by what they own: `frame` (the wire format, error codes,
//! settings), `hpack` (header blocks both ways, under our limits),
//! `request` (a validated request), `streams` (stream states and windows),
//! `budget` (abuse budgets), `reader` (reading, frame by frame: the
//! preface, frame headers, DATA), `control` (the control frames), `headers`
//! (header blocks). This file
//! holds the connection and what the runtime calls to send.
//!
//! Memory is bounded whatever the peer sends: at most one frame's payload
//! buffered (and only when a read cut it; a whole frame is read where it
//! lies), one header block (SETTINGS_MAX_HEADER_LIST_SIZE + 1 KiB encoded),
//! one request, the HPACK table (SETTINGS_HEADER_TABLE_SIZE), and
//! SETTINGS_MAX_CONCURRENT_STREAMS streams; closed streams cost nothing.
//! What we write in answer to the peer (ACKs, RST_STREAM, WINDOW_UPDATE) is
//! bounded by the budgets ([`Settings::resets_per_second`],
//! [`Settings::control_frames_per_second`]).

mod budget;
mod control;
mod frame;
mod headers;
pub(crate) mod hpack;
mod reader;
pub(crate) mod request;
mod streams;
#[cfg(test)]
mod tests;

pub(crate) use self::frame::{ErrorCode, H2Error};
pub(crate) use self::reader::{Event, Reader};
pub(crate) use self::request::Request;

use self::budget::Bucket;
use self::frame::{DEFAULT_WINDOW, MAX_MAX_FRAME, MAX_WINDOW, MIN_MAX_FRAME, flag, kind, setting};
use self::hpack::HeaderDecoder;
use self::reader::State;
use self::streams::Streams;
use crate::transport::outbox::{BufferPool, Outbox};

/// The client connection preface (RFC 9113 §3.4).
pub(crate) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Our side's limits (the runtime fills it from its config).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// SETTINGS_MAX_CONCURRENT_STREAMS: a HEADERS beyond it is refused
    /// (RST_STREAM(REFUSED_STREAM)).
    pub max_concurrent_streams: u32,
    /// Our per-stream receive window (SETTINGS_INITIAL_WINDOW_SIZE).
    pub initial_window_size: u32,
    /// Our connection receive window (a WINDOW_UPDATE on stream 0 at start
    /// for the difference from 65,535; it cannot be smaller).
    pub connection_window: u32,
    /// SETTINGS_MAX_FRAME_SIZE we accept (a larger frame: FRAME_SIZE_ERROR).
    pub max_frame_size: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE (RFC 9113 size: name + value + 32 per
    /// field).
    pub max_header_list_size: u32,
    /// SETTINGS_HEADER_TABLE_SIZE: the HPACK decoder's largest table (a
    /// peer's size update above it: COMPRESSION_ERROR).
    pub header_table_size: u32,
    /// Streams reset by the peer (RST_STREAM) or by us for its errors, per
    /// second, with a burst of the same: past it GOAWAY(ENHANCE_YOUR_CALM)
    /// (CVE-2023-44487 rapid reset, CVE-2025-8671 MadeYouReset). 0: no limit.
    pub resets_per_second: u32,
    /// SETTINGS, PING, and frames that carry nothing yet cost work or a
    /// reply (empty DATA without END_STREAM, empty CONTINUATION,
    /// WINDOW_UPDATE, PRIORITY, unknown types), per second with the same
    /// burst: past it GOAWAY(ENHANCE_YOUR_CALM) (CVE-2019-9512/9515/9518
    /// class). 0: no limit.
    pub control_frames_per_second: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 100,
            initial_window_size: DEFAULT_WINDOW,
            connection_window: 1 << 20,
            max_frame_size: MIN_MAX_FRAME,
            max_header_list_size: 16_384,
            header_table_size: 4_096,
            resets_per_second: 100,
            control_frames_per_second: 1_000,
        }
    }
}

impl Settings {
    /// The settings made valid: windows at most 2^31-1 (the connection's at
    /// least 65,535, which it starts with), the frame size within RFC 9113's
    /// range.
    fn clamped(mut self) -> Self {
        let max_window = MAX_WINDOW as u32;
        self.initial_window_size = self.initial_window_size.min(max_window);
        self.connection_window = self.connection_window.clamp(DEFAULT_WINDOW, max_window);
        self.max_frame_size = self.max_frame_size.clamp(MIN_MAX_FRAME, MAX_MAX_FRAME);
        self
    }
}

/// Most bytes of a header block we gather beyond SETTINGS_MAX_HEADER_LIST_SIZE
/// (encoded blocks are normally smaller than the list they decode to; the
/// slack covers size updates and odd encodings).
const BLOCK_SLACK: usize = 1024;
/// Most CONTINUATION frames one header block may take (CVE-2024-27316 and
/// the 2024 CONTINUATION floods: the size bound stops big frames, this one
/// stops many small ones).
const MAX_CONTINUATIONS: u32 = 32;
/// Buffers larger than this are freed once used, so that an idle connection
/// holds little.
const KEEP_BUFFER: usize = 4096;
/// DATA payloads at least this long move from a stream's queue to the
/// socket's by handing over buffers (`Outbox::move_front`), shorter ones are
/// copied behind their frame header: below it, a copy costs less than a
/// buffer of its own for the header and one more slice in the write.
const MOVE_FROM: usize = 4096;

/// One server-side HTTP/2 connection.
#[derive(Debug)]
pub(crate) struct H2 {
    settings: Settings,
    streams: Streams,
    decoder: HeaderDecoder,
    /// The last request decoded (lent to the runtime by [`Event::Request`]).
    request: Request,
    /// The peer's SETTINGS_INITIAL_WINDOW_SIZE and SETTINGS_MAX_FRAME_SIZE.
    peer_initial_window: u32,
    peer_max_frame: u32,
    /// What we may send on the connection (the peer's window).
    conn_send: i64,
    /// What the peer may still send on the connection, and what was
    /// consumed since the last WINDOW_UPDATE.
    conn_recv: i64,
    conn_unacked: u32,
    /// The peer acknowledged our SETTINGS (our initial window then applies,
    /// RFC 9113 §6.9.2; until then a smaller one is not assumed).
    settings_acked: bool,
    /// Reading.
    state: State,
    /// A frame's payload cut by the end of a read.
    frame_buf: Vec<u8>,
    /// The header block being gathered (HEADERS + CONTINUATION).
    block: Vec<u8>,
    pending_block: Option<headers::PendingBlock>,
    /// The peer's first SETTINGS came (the first frame must be one).
    got_settings: bool,
    /// The highest stream id whose request was handed on (GOAWAY's last id).
    last_accepted: u32,
    sent_goaway: bool,
    received_goaway: bool,
    resets: Bucket,
    control: Bucket,
    /// The clock of the last read (for resets asked outside a read).
    now_ms: u64,
    /// The reset budget was spent by [`H2::reset`]: the next read ends the
    /// connection.
    calm_owed: bool,
    /// Encoding scratch for response blocks.
    scratch: Vec<u8>,
}

impl H2 {
    pub fn new(settings: Settings) -> Self {
        let settings = settings.clamped();
        Self {
            settings,
            streams: Streams::default(),
            decoder: HeaderDecoder::new(settings.header_table_size, settings.max_header_list_size),
            request: Request::default(),
            peer_initial_window: DEFAULT_WINDOW,
            peer_max_frame: MIN_MAX_FRAME,
            conn_send: i64::from(DEFAULT_WINDOW),
            conn_recv: i64::from(settings.connection_window),
            conn_unacked: 0,
            settings_acked: false,
            state: State::Preface(0),
            frame_buf: Vec::new(),
            block: Vec::new(),
            pending_block: None,
            got_settings: false,
            last_accepted: 0,
            sent_goaway: false,
            received_goaway: false,
            resets: Bucket::new(settings.resets_per_second),
            control: Bucket::new(settings.control_frames_per_second),
            now_ms: 0,
            calm_owed: false,
            scratch: Vec::new(),
        }
    }

    /// Queues our connection preface: SETTINGS (with
    /// SETTINGS_ENABLE_CONNECT_PROTOCOL = 1, RFC 8441) and the connection
    /// WINDOW_UPDATE. Called once, before the first read.
    pub fn start(&mut self, out: &mut Outbox, pool: &mut BufferPool) {
        let s = self.settings;
        let payload = frame::settings_payload(&[
            (setting::HEADER_TABLE_SIZE, s.header_table_size),
            (setting::MAX_CONCURRENT_STREAMS, s.max_concurrent_streams),
            (setting::INITIAL_WINDOW_SIZE, s.initial_window_size),
            (setting::MAX_FRAME_SIZE, s.max_frame_size),
            (setting::MAX_HEADER_LIST_SIZE, s.max_header_list_size),
            (setting::ENABLE_CONNECT_PROTOCOL, 1),
        ]);
        frame::write(out, pool, kind::SETTINGS, 0, 0, &payload);
        let extra = s.connection_window - DEFAULT_WINDOW;
        if extra > 0 {
            frame::write_window_update(out, pool, 0, extra);
        }
    }

    /// Reads plaintext bytes from the socket (cut anywhere) and returns what
    /// they give, step by step.
    pub fn read<'a>(&'a mut self, bytes: &'a mut [u8]) -> Reader<'a> {
        Reader::new(self, bytes)
    }

    /// Our receive window for a new stream: our setting once the peer
    /// acknowledged it; before, at least the protocol's default, which the
    /// peer may still assume (RFC 9113 §6.9.2).
    fn recv_initial(&self) -> i64 {
        let ours = i64::from(self.settings.initial_window_size);
        if self.settings_acked {
            ours
        } else {
            ours.max(i64::from(DEFAULT_WINDOW))
        }
    }

    /// Queues a response HEADERS (plus CONTINUATION past the peer's
    /// SETTINGS_MAX_FRAME_SIZE) for `stream`: `:status` then `headers`
    /// (lowercased; connection-specific and invalid fields dropped),
    /// END_STREAM if `end`. Stateless encoding, so the order of streams
    /// never matters. A stream that no longer exists, or whose response was
    /// already queued, or whose side we ended: nothing.
    pub fn respond(
        &mut self,
        stream: u32,
        status: u16,
        headers: &[(&str, &str)],
        end: bool,
        out: &mut Outbox,
        pool: &mut BufferPool,
    ) {
        let Some(s) = self.streams.get_mut(stream) else {
            return;
        };
        if s.responded || s.local_closed {
            return;
        }
        s.responded = true;
        s.local_closed = end;
        let mut block = std::mem::take(&mut self.scratch);
        block.clear();
        hpack::encode_response(&mut block, status, headers);
        let max = self.peer_max_frame as usize;
        let mut chunks = block.chunks(max).peekable();
        let mut first = true;
        // An empty block is impossible (`:status` is always there).
        while let Some(chunk) = chunks.next() {
            let last = chunks.peek().is_none();
            let mut flags = if last { flag::END_HEADERS } else { 0 };
            let frame_kind = if first {
                if end {
                    flags |= flag::END_STREAM;
                }
                kind::HEADERS
            } else {
                kind::CONTINUATION
            };
            frame::write(out, pool, frame_kind, flags, stream, chunk);
            first = false;
        }
        if block.capacity() <= KEEP_BUFFER {
            self.scratch = block;
        }
        self.streams.forget_if_closed(stream);
    }

    /// Moves up to what the peer's windows (stream and connection) and
    /// `budget` allow of `queue` into `out` as DATA frames of at most the
    /// peer's SETTINGS_MAX_FRAME_SIZE; with `end`, once the queue is empty
    /// the last DATA carries END_STREAM (an empty DATA if nothing was
    /// left). Returns the bytes moved. A stream that is gone, reset or whose
    /// side we ended: the queue is cleared, 0. Before the stream's response
    /// HEADERS: 0 (DATA may not come first).
    pub fn send_data(
        &mut self,
        stream: u32,
        queue: &mut Outbox,
        end: bool,
        out: &mut Outbox,
        pool: &mut BufferPool,
        budget: usize,
    ) -> usize {
        let Some(s) = self.streams.get_mut(stream) else {
            queue.clear(pool);
            return 0;
        };
        if s.local_closed {
            queue.clear(pool);
            return 0;
        }
        if !s.responded {
            return 0;
        }
        let window = s.send_window.min(self.conn_send).max(0) as usize;
        let total = queue.len().min(window).min(budget);
        let max = self.peer_max_frame as usize;
        let takes_all = total == queue.len();
        let mut moved = 0;
        while moved < total {
            let len = (total - moved).min(max);
            let fin = end && takes_all && moved + len == total;
            let head = frame::FrameHead {
                len: len as u32,
                kind: kind::DATA,
                flags: if fin { flag::END_STREAM } else { 0 },
                stream,
            };
            if len >= MOVE_FROM {
                out.append_with(pool, frame::HEADER_LEN, |buf| {
                    buf.extend_from_slice(&head.encode());
                });
                queue.move_front(pool, len, out);
            } else {
                out.append_with(pool, frame::HEADER_LEN + len, |buf| {
                    buf.extend_from_slice(&head.encode());
                    queue.copy_front(len, buf);
                });
                queue.consume(pool, len);
            }
            moved += len;
            if fin {
                s.local_closed = true;
            }
        }
        s.send_window -= moved as i64;
        self.conn_send -= moved as i64;
        if end && queue.is_empty() && !s.local_closed {
            frame::write(out, pool, kind::DATA, flag::END_STREAM, stream, &[]);
            s.local_closed = true;
        }
        self.streams.forget_if_closed(stream);
        moved
    }

    // Used by the codec's tests and the fuzz harness.
    #[cfg(any(test, feature = "fuzzing"))]
    /// Our side of `stream` ends: END_STREAM (an empty DATA) if not sent
    /// yet. A stream without a response cannot end with DATA (HEADERS must
    /// come first): it is reset (CANCEL) instead.
    pub fn end_stream(&mut self, stream: u32, out: &mut Outbox, pool: &mut BufferPool) {
        let Some(s) = self.streams.get_mut(stream) else {
            return;
        };
        if s.local_closed {
            return;
        }
        if !s.responded {
            self.send_reset(stream, ErrorCode::CANCEL, out, pool);
            return;
        }
        s.local_closed = true;
        frame::write(out, pool, kind::DATA, flag::END_STREAM, stream, &[]);
        self.streams.forget_if_closed(stream);
    }

    /// RST_STREAM(`code`) and the stream is forgotten (if it exists). The
    /// runtime resets a stream for its peer's errors (a bad WebSocket
    /// frame): such resets count in the reset budget like the codec's own
    /// (CVE-2025-8671), and a spent budget ends the connection at the next
    /// read. CANCEL and NO_ERROR are the runtime's own choices and are not
    /// counted.
    pub fn reset(&mut self, stream: u32, code: ErrorCode, out: &mut Outbox, pool: &mut BufferPool) {
        if self.streams.get(stream).is_none() {
            return;
        }
        if code != ErrorCode::CANCEL
            && code != ErrorCode::NO_ERROR
            && !self.resets.take(self.now_ms)
        {
            self.calm_owed = true;
        }
        self.send_reset(stream, code, out, pool);
    }

    /// Writes RST_STREAM and forgets the stream, remembering it as reset
    /// (its frames in flight are ignored).
    fn send_reset(
        &mut self,
        stream: u32,
        code: ErrorCode,
        out: &mut Outbox,
        pool: &mut BufferPool,
    ) {
        frame::write_rst(out, pool, stream, code);
        self.streams.remove(stream, true);
    }

    /// The runtime is done with `stream`: still open on the peer's side
    /// after our END_STREAM, RST_STREAM(NO_ERROR) (RFC 9113 §8.1: stop
    /// sending); our side still open, RST_STREAM(CANCEL). Then forgotten.
    /// Idempotent.
    pub fn release(&mut self, stream: u32, out: &mut Outbox, pool: &mut BufferPool) {
        let Some(s) = self.streams.get(stream) else {
            return;
        };
        let code = if s.local_closed {
            ErrorCode::NO_ERROR
        } else {
            ErrorCode::CANCEL
        };
        self.send_reset(stream, code, out, pool);
    }

    /// `n` bytes of `stream`'s DATA were consumed: the windows are credited
    /// back with WINDOW_UPDATE, batched (once half a window is consumed): the
    /// connection always, the stream unless it is paused (or the peer ended
    /// it, when more window is of no use). A stream that is gone: the
    /// connection only.
    pub fn consumed(&mut self, stream: u32, n: usize, out: &mut Outbox, pool: &mut BufferPool) {
        self.credit(stream, n, out, pool);
    }

    /// Credits `n` bytes (consumed, or discarded by us: padding, frames for
    /// streams that are gone) to the connection's window and `stream`'s.
    fn credit(&mut self, stream: u32, n: usize, out: &mut Outbox, pool: &mut BufferPool) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.conn_unacked = self.conn_unacked.saturating_add(n);
        let threshold = (self.settings.connection_window / 2).max(1);
        if self.conn_unacked >= threshold {
            // Never past 2^31-1 (a runtime that over-reports cannot make us
            // send a FLOW_CONTROL_ERROR).
            let room = (MAX_WINDOW - self.conn_recv).max(0);
            let increment = i64::from(self.conn_unacked).min(room) as u32;
            self.conn_unacked = 0;
            if increment > 0 {
                self.conn_recv += i64::from(increment);
                frame::write_window_update(out, pool, 0, increment);
            }
        }
        if let Some(s) = self.streams.get_mut(stream) {
            s.recv_unacked = s.recv_unacked.saturating_add(n);
        }
        self.credit_stream(stream, false, out, pool);
    }

    /// Sends `stream`'s WINDOW_UPDATE if enough is owed (or any, `now`).
    fn credit_stream(&mut self, stream: u32, now: bool, out: &mut Outbox, pool: &mut BufferPool) {
        let threshold = (self.settings.initial_window_size / 2).max(1);
        let Some(s) = self.streams.get_mut(stream) else {
            return;
        };
        if s.paused || s.remote_closed || s.recv_unacked == 0 {
            return;
        }
        if !now && s.recv_unacked < threshold {
            return;
        }
        let room = (MAX_WINDOW - s.recv_window).max(0);
        let increment = i64::from(s.recv_unacked).min(room) as u32;
        s.recv_unacked = 0;
        if increment > 0 {
            s.recv_window += i64::from(increment);
            frame::write_window_update(out, pool, stream, increment);
        }
    }

    /// Reading `stream` is paused: its window is not credited back until
    /// [`Self::resume`], so the peer can send at most one window more (the
    /// stream stalls, not the connection).
    pub fn pause(&mut self, stream: u32) {
        if let Some(s) = self.streams.get_mut(stream) {
            s.paused = true;
        }
    }

    /// Reading `stream` goes on: what it consumed meanwhile is credited.
    pub fn resume(&mut self, stream: u32, out: &mut Outbox, pool: &mut BufferPool) {
        if let Some(s) = self.streams.get_mut(stream) {
            s.paused = false;
            self.credit_stream(stream, true, out, pool);
        }
    }

    /// GOAWAY(`code`, the last stream we handed on); no new stream is
    /// accepted after it (a HEADERS for one gets RST_STREAM(REFUSED_STREAM)),
    /// the open ones go on. Once.
    pub fn go_away(&mut self, code: ErrorCode, out: &mut Outbox, pool: &mut BufferPool) {
        if self.sent_goaway {
            return;
        }
        self.sent_goaway = true;
        frame::write_goaway(out, pool, self.last_accepted, code);
    }

    // Used by the codec's tests and the fuzz harness.
    #[cfg(any(test, feature = "fuzzing"))]
    /// Streams open (not closed on both sides and not forgotten).
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    // Used by the codec's tests and the fuzz harness.
    #[cfg(any(test, feature = "fuzzing"))]
    /// Bytes `stream` may send now (the smaller of its window and the
    /// connection's; 0 if it is gone or its side ended).
    pub fn send_capacity(&self, stream: u32) -> usize {
        match self.streams.get(stream) {
            Some(s) if !s.local_closed => s.send_window.min(self.conn_send).max(0) as usize,
            _ => 0,
        }
    }

    /// GOAWAY was sent or received.
    pub fn going_away(&self) -> bool {
        self.sent_goaway || self.received_goaway
    }

    /// The peer's window for the connection and for each stream, for the
    /// fuzz harness's invariants.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn windows(&self) -> (i64, Vec<(u32, i64, i64)>) {
        let streams = self
            .streams
            .iter()
            .map(|(id, s)| (id, s.send_window, s.recv_window))
            .collect();
        (self.conn_send, streams)
    }

    /// Our receive window for the connection.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn conn_recv_window(&self) -> i64 {
        self.conn_recv
    }
}
