//! HTTP/2 frames as bytes (RFC 9113 §4, §6): the 9-byte header, the frame
//! types and flags we act on, error codes, SETTINGS parameters and their
//! validation, and the writers of the frames the server sends. Nothing here
//! keeps state: the connection (`super::H2`) decides, this module spells.

use crate::transport::outbox::{BufferPool, Outbox};

/// Length of a frame header.
pub(crate) const HEADER_LEN: usize = 9;
/// The largest flow-control window (RFC 9113 §6.9.1).
pub(crate) const MAX_WINDOW: i64 = (1 << 31) - 1;
/// The window every stream and the connection start with (RFC 9113 §6.9.2).
pub(crate) const DEFAULT_WINDOW: u32 = 65_535;
/// SETTINGS_MAX_FRAME_SIZE's floor and ceiling (RFC 9113 §6.5.2).
pub(crate) const MIN_MAX_FRAME: u32 = 16_384;
pub(crate) const MAX_MAX_FRAME: u32 = (1 << 24) - 1;

/// Frame types (RFC 9113 §6).
pub(crate) mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags (RFC 9113 §6); ACK shares END_STREAM's bit on the frames that
/// carry it (SETTINGS, PING).
pub(crate) mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// SETTINGS parameters (RFC 9113 §6.5.2, RFC 8441 §3).
pub(crate) mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
    pub const ENABLE_CONNECT_PROTOCOL: u16 = 0x8;
}

/// An HTTP/2 error code (RFC 9113 §7). Unknown codes from the peer are kept
/// as they came (they mean INTERNAL_ERROR to us, but are reported as sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ErrorCode(pub u32);

// The whole set RFC 9113 §7 defines, whether or not the codec sends it: the
// runtime and its logs name codes by these.
#[allow(dead_code)]
impl ErrorCode {
    pub const NO_ERROR: Self = Self(0x0);
    pub const PROTOCOL_ERROR: Self = Self(0x1);
    pub const INTERNAL_ERROR: Self = Self(0x2);
    pub const FLOW_CONTROL_ERROR: Self = Self(0x3);
    pub const SETTINGS_TIMEOUT: Self = Self(0x4);
    pub const STREAM_CLOSED: Self = Self(0x5);
    pub const FRAME_SIZE_ERROR: Self = Self(0x6);
    pub const REFUSED_STREAM: Self = Self(0x7);
    pub const CANCEL: Self = Self(0x8);
    pub const COMPRESSION_ERROR: Self = Self(0x9);
    pub const CONNECT_ERROR: Self = Self(0xa);
    pub const ENHANCE_YOUR_CALM: Self = Self(0xb);
    pub const INADEQUATE_SECURITY: Self = Self(0xc);
    pub const HTTP_1_1_REQUIRED: Self = Self(0xd);
}

/// A connection error: GOAWAY(code) is queued; `reason` is for logs and
/// metrics (a fixed string, so that an error costs no allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct H2Error {
    pub code: ErrorCode,
    pub reason: &'static str,
}

impl H2Error {
    pub(crate) const fn new(code: ErrorCode, reason: &'static str) -> Self {
        Self { code, reason }
    }

    pub(crate) const fn protocol(reason: &'static str) -> Self {
        Self::new(ErrorCode::PROTOCOL_ERROR, reason)
    }

    pub(crate) const fn frame_size(reason: &'static str) -> Self {
        Self::new(ErrorCode::FRAME_SIZE_ERROR, reason)
    }

    pub(crate) const fn flow(reason: &'static str) -> Self {
        Self::new(ErrorCode::FLOW_CONTROL_ERROR, reason)
    }

    pub(crate) const fn calm(reason: &'static str) -> Self {
        Self::new(ErrorCode::ENHANCE_YOUR_CALM, reason)
    }
}

impl std::fmt::Display for H2Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP/2 error {:#x}: {}", self.code.0, self.reason)
    }
}

impl std::error::Error for H2Error {}

/// A frame header (RFC 9113 §4.1). The stream id's reserved bit is dropped
/// on reading, as the RFC asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHead {
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl FrameHead {
    pub(crate) fn parse(b: &[u8; HEADER_LEN]) -> Self {
        Self {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    pub(crate) fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// The header's bytes. `len` must fit 24 bits (our writers never build a
    /// frame above the peer's SETTINGS_MAX_FRAME_SIZE, itself below 2^24).
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let len = self.len.to_be_bytes();
        let stream = (self.stream & 0x7fff_ffff).to_be_bytes();
        [
            len[1], len[2], len[3], self.kind, self.flags, stream[0], stream[1], stream[2],
            stream[3],
        ]
    }
}

/// Queues one frame, header and payload copied into the outbox.
pub(crate) fn write(
    out: &mut Outbox,
    pool: &mut BufferPool,
    kind: u8,
    flags: u8,
    stream: u32,
    payload: &[u8],
) {
    let head = FrameHead {
        len: payload.len() as u32,
        kind,
        flags,
        stream,
    };
    out.push_copy(pool, &head.encode(), payload);
}

pub(crate) fn write_rst(out: &mut Outbox, pool: &mut BufferPool, stream: u32, code: ErrorCode) {
    write(
        out,
        pool,
        kind::RST_STREAM,
        0,
        stream,
        &code.0.to_be_bytes(),
    );
}

/// WINDOW_UPDATE of `increment` (1..=2^31-1; callers never pass 0).
pub(crate) fn write_window_update(
    out: &mut Outbox,
    pool: &mut BufferPool,
    stream: u32,
    increment: u32,
) {
    debug_assert!(increment > 0 && i64::from(increment) <= MAX_WINDOW);
    write(
        out,
        pool,
        kind::WINDOW_UPDATE,
        0,
        stream,
        &(increment & 0x7fff_ffff).to_be_bytes(),
    );
}

pub(crate) fn write_goaway(
    out: &mut Outbox,
    pool: &mut BufferPool,
    last_stream: u32,
    code: ErrorCode,
) {
    let mut payload = [0; 8];
    payload[..4].copy_from_slice(&(last_stream & 0x7fff_ffff).to_be_bytes());
    payload[4..].copy_from_slice(&code.0.to_be_bytes());
    write(out, pool, kind::GOAWAY, 0, 0, &payload);
}

/// Our SETTINGS frame's payload: the parameters that differ from the
/// protocol's defaults, or that we must state (ENABLE_CONNECT_PROTOCOL for
/// RFC 8441, the concurrency limit, whose default is unlimited).
/// ENABLE_PUSH is a client's setting: a server sending it is a
/// PROTOCOL_ERROR for some clients, so it is left out.
pub(crate) fn settings_payload(params: &[(u16, u32)]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(params.len() * 6);
    for &(id, value) in params {
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&value.to_be_bytes());
    }
    payload
}

/// The parameters of a SETTINGS payload (its length a multiple of 6,
/// checked by the caller), in order.
pub(crate) fn settings_params(payload: &[u8]) -> impl Iterator<Item = (u16, u32)> + '_ {
    payload.chunks_exact(6).map(|p| {
        (
            u16::from_be_bytes([p[0], p[1]]),
            u32::from_be_bytes([p[2], p[3], p[4], p[5]]),
        )
    })
}

/// Checks one of the peer's SETTINGS parameters (RFC 9113 §6.5.2, RFC 8441
/// §3); unknown ones are ignored, as the RFC asks.
pub(crate) fn check_setting(id: u16, value: u32) -> Result<(), H2Error> {
    match id {
        setting::ENABLE_PUSH if value > 1 => {
            Err(H2Error::protocol("SETTINGS_ENABLE_PUSH not 0 or 1"))
        }
        setting::ENABLE_CONNECT_PROTOCOL if value > 1 => Err(H2Error::protocol(
            "SETTINGS_ENABLE_CONNECT_PROTOCOL not 0 or 1",
        )),
        setting::INITIAL_WINDOW_SIZE if i64::from(value) > MAX_WINDOW => {
            Err(H2Error::flow("SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1"))
        }
        setting::MAX_FRAME_SIZE if !(MIN_MAX_FRAME..=MAX_MAX_FRAME).contains(&value) => {
            Err(H2Error::protocol("SETTINGS_MAX_FRAME_SIZE out of range"))
        }
        _ => Ok(()),
    }
}

/// Splits a padded payload (PADDED flag: a pad length byte first, then the
/// content, then that many bytes of padding) into its content. Padding that
/// reaches the payload's length is a PROTOCOL_ERROR (RFC 9113 §6.1, §6.2).
pub(crate) fn unpad(payload: &[u8], padded: bool) -> Result<&[u8], H2Error> {
    if !padded {
        return Ok(payload);
    }
    let Some((&pad, rest)) = payload.split_first() else {
        return Err(H2Error::protocol("padded frame without a pad length"));
    };
    let pad = usize::from(pad);
    if pad > rest.len() {
        return Err(H2Error::protocol("padding longer than the frame"));
    }
    Ok(&rest[..rest.len() - pad])
}
