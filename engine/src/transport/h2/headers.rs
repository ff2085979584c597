//! Header blocks (RFC 9113 §4.3, §6.2, §6.10, §8.1): a HEADERS frame and
//! its CONTINUATION frames gathered into one block, whose purpose (a new
//! stream's request, trailers, a refusal, or nothing) is decided when it
//! begins; the block is decoded whole, always (HPACK's table is shared),
//! then acted on. How much is gathered is bounded by the reader
//! (`H2::check_head`) and here (frames per block).

use super::frame::{self, ErrorCode, FrameHead, H2Error, flag};
use super::hpack::{Decoded, Target};
use super::reader::Found;
use super::streams::{Found as Place, Stream};
use super::{H2, KEEP_BUFFER, MAX_CONTINUATIONS};
use crate::transport::outbox::{BufferPool, Outbox};

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
    pub(super) stream: u32,
    end_stream: bool,
    disposition: Disposition,
    frames: u32,
}

impl H2 {
    /// A HEADERS frame: what its block will be for is decided now (the
    /// stream's state when it began), its fragment gathered.
    pub(super) fn headers(
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

    pub(super) fn continuation(
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
