//! Reading the server's bytes, cut anywhere, as [`Event`]s: DATA handed out
//! in place a piece at a time, other frames gathered and handled whole.

use super::{
    CONNECTION_WINDOW, Event, FrameHead, H2, H2Error, HEAD, MAX_FRAME, MAX_WINDOW, Reading, flag,
    head_ack, kind, setting, u32_at,
};

impl H2 {
    /// The next event in `input` (which it advances), `None` once every byte
    /// of it is taken.
    pub fn next<'a>(&mut self, input: &mut &'a mut [u8]) -> Result<Option<Event<'a>>, H2Error> {
        loop {
            if input.is_empty() {
                // A DATA frame's pieces are all handed out: one without data
                // still reports its end or its padding.
                if let Reading::Data {
                    stream,
                    left: 0,
                    pad,
                    owed,
                    end_stream,
                } = self.reading
                    && (end_stream || owed > 0)
                {
                    self.reading = Reading::Skip { left: pad };
                    return Ok(Some(Event::Data {
                        stream,
                        data: &mut [],
                        flow: owed,
                        end_stream,
                    }));
                }
                return Ok(None);
            }
            match &mut self.reading {
                Reading::Head { bytes, have } => {
                    let n = (HEAD - *have).min(input.len());
                    bytes[*have..*have + n].copy_from_slice(&input[..n]);
                    *have += n;
                    *input = &mut std::mem::take(input)[n..];
                    if *have < HEAD {
                        continue;
                    }
                    let b = *bytes;
                    let head = FrameHead {
                        len: (usize::from(b[0]) << 16)
                            | (usize::from(b[1]) << 8)
                            | usize::from(b[2]),
                        kind: b[3],
                        flags: b[4],
                        stream: u32_at(&b, 5) & MAX_WINDOW as u32,
                    };
                    if let Some(event) = self.begin(head)? {
                        return Ok(Some(event));
                    }
                }
                Reading::PadLength { head } => {
                    let head = *head;
                    let pad = usize::from(input[0]);
                    *input = &mut std::mem::take(input)[1..];
                    if pad >= head.len {
                        return Err(H2Error("DATA padding past its frame"));
                    }
                    self.reading = Reading::Data {
                        stream: head.stream,
                        left: head.len - 1 - pad,
                        pad,
                        owed: 1 + pad as u32,
                        end_stream: head.flags & flag::END_STREAM != 0,
                    };
                }
                Reading::Data {
                    stream,
                    left,
                    pad,
                    owed,
                    end_stream,
                } => {
                    let n = (*left).min(input.len());
                    let (data, rest) = std::mem::take(input).split_at_mut(n);
                    *input = rest;
                    *left -= n;
                    let event = Event::Data {
                        stream: *stream,
                        data,
                        flow: n as u32 + std::mem::take(owed),
                        end_stream: *end_stream && *left == 0,
                    };
                    if *left == 0 {
                        self.reading = Reading::Skip { left: *pad };
                    }
                    return Ok(Some(event));
                }
                Reading::Skip { left } => {
                    let n = (*left).min(input.len());
                    *left -= n;
                    *input = &mut std::mem::take(input)[n..];
                    if *left == 0 {
                        self.reading = Reading::Head {
                            bytes: [0; HEAD],
                            have: 0,
                        };
                    }
                }
                Reading::Other { head, left } => {
                    let head = *head;
                    let n = (*left).min(input.len());
                    self.payload.extend_from_slice(&input[..n]);
                    *left -= n;
                    *input = &mut std::mem::take(input)[n..];
                    if *left == 0 {
                        self.reading = Reading::Head {
                            bytes: [0; HEAD],
                            have: 0,
                        };
                        let payload = std::mem::take(&mut self.payload);
                        let event = self.control(head, &payload);
                        self.payload = payload;
                        self.payload.clear();
                        if let Some(event) = event? {
                            return Ok(Some(event));
                        }
                    }
                }
            }
        }
    }

    /// A frame header read: what follows it.
    fn begin(&mut self, head: FrameHead) -> Result<Option<Event<'static>>, H2Error> {
        if head.len > MAX_FRAME {
            return Err(H2Error("a frame larger than SETTINGS_MAX_FRAME_SIZE"));
        }
        if self.continuation.is_some() && head.kind != kind::CONTINUATION {
            return Err(H2Error("a header block interrupted"));
        }
        if head.kind != kind::DATA {
            self.payload.clear();
            self.reading = Reading::Other {
                head,
                left: head.len,
            };
            if head.len == 0 {
                // Nothing to gather: handle it at once.
                self.reading = Reading::Head {
                    bytes: [0; HEAD],
                    have: 0,
                };
                return self.control(head, &[]);
            }
            return Ok(None);
        }
        if head.stream == 0 {
            return Err(H2Error("DATA on stream 0"));
        }
        // The connection's window is credited back at once, batched.
        self.conn_unacked += head.len as u32;
        if self.conn_unacked >= CONNECTION_WINDOW / 2 {
            let n = std::mem::take(&mut self.conn_unacked);
            self.window_update(0, n);
        }
        let end_stream = head.flags & flag::END_STREAM != 0;
        if head.flags & flag::PADDED != 0 {
            if head.len == 0 {
                return Err(H2Error("PADDED DATA without its pad length"));
            }
            self.reading = Reading::PadLength { head };
            return Ok(None);
        }
        self.reading = Reading::Data {
            stream: head.stream,
            left: head.len,
            pad: 0,
            owed: 0,
            end_stream,
        };
        Ok(None)
    }

    /// A whole frame other than DATA.
    fn control(&mut self, head: FrameHead, p: &[u8]) -> Result<Option<Event<'static>>, H2Error> {
        match head.kind {
            kind::SETTINGS => {
                if head.flags & flag::ACK != 0 {
                    return Ok(None);
                }
                if !head.len.is_multiple_of(6) {
                    return Err(H2Error("SETTINGS length not a multiple of 6"));
                }
                let mut delta = 0;
                for param in p.chunks_exact(6) {
                    let value = u32_at(param, 2);
                    match u16::from_be_bytes([param[0], param[1]]) {
                        setting::MAX_CONCURRENT_STREAMS => self.max_streams = value,
                        setting::INITIAL_WINDOW_SIZE => {
                            delta += i64::from(value) - i64::from(self.peer_initial_window);
                            self.peer_initial_window = value;
                        }
                        setting::MAX_FRAME_SIZE => self.peer_max_frame = value as usize,
                        setting::ENABLE_CONNECT_PROTOCOL => self.connect_protocol = value == 1,
                        _ => {}
                    }
                }
                head_ack(&mut self.out, kind::SETTINGS, &[]);
                if !std::mem::replace(&mut self.got_settings, true) {
                    return Ok(Some(Event::Ready));
                }
                Ok((delta != 0).then_some(Event::StreamWindow(delta)))
            }
            kind::PING => {
                if head.len != 8 {
                    return Err(H2Error("PING not 8 bytes"));
                }
                if head.flags & flag::ACK == 0 {
                    head_ack(&mut self.out, kind::PING, p);
                }
                Ok(None)
            }
            kind::HEADERS => {
                let mut p = p;
                let mut pad = 0;
                if head.flags & flag::PADDED != 0 {
                    pad = usize::from(*p.first().ok_or(H2Error("HEADERS padding"))?);
                    p = &p[1..];
                }
                if head.flags & flag::PRIORITY != 0 {
                    p = p.get(5..).ok_or(H2Error("HEADERS priority"))?;
                }
                let p = p
                    .get(..p.len().wrapping_sub(pad))
                    .ok_or(H2Error("HEADERS padding past its frame"))?;
                self.block.clear();
                self.block.extend_from_slice(p);
                let end_stream = head.flags & flag::END_STREAM != 0;
                if head.flags & flag::END_HEADERS == 0 {
                    self.continuation = Some((head.stream, end_stream));
                    return Ok(None);
                }
                Ok(Some(Event::Headers {
                    stream: head.stream,
                    end_stream,
                }))
            }
            kind::CONTINUATION => {
                let Some((stream, end_stream)) = self.continuation else {
                    return Err(H2Error("CONTINUATION without HEADERS"));
                };
                if stream != head.stream {
                    return Err(H2Error("CONTINUATION on another stream"));
                }
                self.block.extend_from_slice(p);
                if head.flags & flag::END_HEADERS == 0 {
                    return Ok(None);
                }
                self.continuation = None;
                Ok(Some(Event::Headers { stream, end_stream }))
            }
            kind::RST_STREAM if head.len == 4 => Ok(Some(Event::Reset {
                stream: head.stream,
                code: u32_at(p, 0),
            })),
            kind::WINDOW_UPDATE if head.len == 4 => {
                let increment = u32_at(p, 0) & MAX_WINDOW as u32;
                if head.stream != 0 {
                    return Ok(Some(Event::WindowUpdate {
                        stream: head.stream,
                        increment,
                    }));
                }
                self.send_window += i64::from(increment);
                if self.send_window > MAX_WINDOW {
                    return Err(H2Error("connection window past 2^31-1"));
                }
                Ok(Some(Event::ConnectionWindow))
            }
            kind::GOAWAY if head.len >= 8 => Ok(Some(Event::GoAway {
                last_stream: u32_at(p, 0) & MAX_WINDOW as u32,
                code: u32_at(p, 4),
            })),
            kind::RST_STREAM | kind::WINDOW_UPDATE | kind::GOAWAY => {
                Err(H2Error("a control frame of the wrong size"))
            }
            kind::PUSH_PROMISE => Err(H2Error("PUSH_PROMISE with push disabled")),
            // PRIORITY and unknown types are ignored (RFC 9113 §4.1).
            _ => Ok(None),
        }
    }
}
