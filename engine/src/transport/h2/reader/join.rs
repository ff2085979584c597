//! Consecutive DATA frames of one stream, joined where they lie in a read.

use super::super::frame::{FrameHead, HEADER_LEN, flag, kind};
use super::{Found, Reader, State};
use crate::transport::outbox::{BufferPool, Outbox};

impl Reader<'_> {
    /// DATA payload `start..end` of `stream`, joined in place with the
    /// payloads of the same stream's DATA frames that follow it whole in
    /// this read: each 9-byte frame header between them is closed up by
    /// moving the shorter side over it. A WebSocket frame that a client cut
    /// into DATA frames (16,384 bytes each, unless the server raised
    /// SETTINGS_MAX_FRAME_SIZE) then reaches its decoder in one piece and is
    /// unmasked where it lies, instead of being gathered into the decoder's
    /// buffer: a 16 KiB message costs a few bytes moved, not 16 KiB copied.
    /// Whatever the step after it gave, when it is not such a frame, is kept
    /// for the next call.
    pub(super) fn join_data(
        &mut self,
        stream: u32,
        mut start: usize,
        mut end: usize,
        out: &mut Outbox,
        pool: &mut BufferPool,
        now: u64,
    ) -> Found {
        // Where the last joined frame's payload ended in the read.
        let mut last = end;
        while let State::Data(data) = self.h2.state {
            let frame_done = data.data_left == 0 && data.pad_left == 0 && !data.pad_pending;
            if !frame_done || data.end_stream || last != self.pos || self.rest() <= HEADER_LEN {
                break;
            }
            let Ok(raw) =
                <&[u8; HEADER_LEN]>::try_from(&self.bytes[self.pos..self.pos + HEADER_LEN])
            else {
                break;
            };
            let head = FrameHead::parse(raw);
            let whole = head.len as usize <= self.rest() - HEADER_LEN;
            if head.kind != kind::DATA
                || head.stream != stream
                || head.has(flag::PADDED)
                || head.len == 0
                || !whole
            {
                break;
            }
            // The next frame's header and payload go through the codec as
            // they would have (flow control, limits, stream errors).
            match self.step(out, pool, now) {
                Ok(Some(Found::Data {
                    stream: next,
                    start: next_start,
                    end: next_end,
                })) if next == stream && next_start == last + HEADER_LEN => {
                    let (joined, more) = (end - start, next_end - next_start);
                    if joined <= more {
                        self.bytes.copy_within(start..end, next_start - joined);
                        start = next_start - joined;
                        end = next_end;
                    } else {
                        self.bytes.copy_within(next_start..next_end, end);
                        end += more;
                    }
                    last = next_end;
                }
                other => {
                    self.after_data = Some(other);
                    break;
                }
            }
        }
        Found::Data { stream, start, end }
    }
}
