//! A record's read side ([`ReadSide`]) as bytes, the last section of the
//! record (`wire`): the decoder's state when it is not idle, the
//! bytes read after the pause, and a TLS record cut by the end of a read.
//! Every length is bounded here; whether the decoder's fields make a state
//! it could have reached is checked where it is rebuilt
//! (`Decoder::carried`, against the new process's own limits).
//!
//! Layout (integers little-endian):
//!
//! ```text
//! decoder: u8 0|1; then u8 length + a cut header (at most 13 bytes),
//!          frame: u8 0|1; then u8 opcode, u8 flags (bit 0: fin,
//!                 bit 1: masked), 4 bytes mask key, u64 remaining,
//!                 u8 offset
//!          u8 fragmented (0 none, 1 text, 2 binary), u8 compressed 0|1,
//!          u64 budget, u32 length + the message so far,
//!          u8 length + a control frame's payload so far (at most 125)
//! held:    u32 length + bytes
//! record:  u32 length + a cut TLS record
//! ```

use super::bytes::{Reader, WireError};
use super::state::{MAX_HELD, MAX_PARTIAL, ReadSide};
use crate::proto::frame::MAX_HEADER_LEN;
use crate::proto::message::carry::{CarriedDecoder, CarriedFrame};
use crate::transport::tls::framing::MAX_BODY;
use crate::transport::tls::records::HEADER;

/// The longest cut TLS record: one record's header and body, less a byte.
pub(crate) const MAX_CUT_RECORD: usize = HEADER + MAX_BODY;
/// The longest control frame payload.
const MAX_CONTROL: usize = 125;

pub(super) fn put(out: &mut Vec<u8>, read: &ReadSide) {
    match &read.decoder {
        None => out.push(0),
        Some(d) => {
            out.push(1);
            out.push(d.header.len() as u8);
            out.extend_from_slice(&d.header);
            match &d.frame {
                None => out.push(0),
                Some(f) => {
                    out.push(1);
                    out.push(f.opcode);
                    out.push(u8::from(f.fin) | u8::from(f.mask.is_some()) << 1);
                    out.extend_from_slice(&f.mask.unwrap_or_default());
                    out.extend_from_slice(&f.remaining.to_le_bytes());
                    out.push(f.offset);
                }
            }
            out.push(d.fragmented);
            out.push(u8::from(d.compressed));
            out.extend_from_slice(&d.budget.to_le_bytes());
            out.extend_from_slice(&(d.message.len() as u32).to_le_bytes());
            out.extend_from_slice(&d.message);
            out.push(d.control.len() as u8);
            out.extend_from_slice(&d.control);
        }
    }
    for bytes in [&read.held, &read.record] {
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
    }
}

/// Whether `read` fits the bounds [`get`] checks.
pub(super) fn fits(read: &ReadSide) -> Result<(), WireError> {
    if let Some(d) = &read.decoder {
        if d.header.len() >= MAX_HEADER_LEN {
            return Err(WireError::TooLong("cut frame header"));
        }
        if d.message.len() > MAX_PARTIAL {
            return Err(WireError::TooLong("message in progress"));
        }
        if d.control.len() > MAX_CONTROL {
            return Err(WireError::TooLong("control frame in progress"));
        }
    }
    if read.held.len() > MAX_HELD {
        return Err(WireError::TooLong("bytes held"));
    }
    if read.record.len() > MAX_CUT_RECORD {
        return Err(WireError::TooLong("cut TLS record"));
    }
    Ok(())
}

pub(super) fn get(r: &mut Reader<'_>) -> Result<ReadSide, WireError> {
    let decoder = if r.flag("decoder")? {
        let len = usize::from(r.u8()?);
        if len >= MAX_HEADER_LEN {
            return Err(WireError::TooLong("cut frame header"));
        }
        let header = r.take(len)?.to_vec();
        let frame = if r.flag("frame")? {
            let opcode = r.u8()?;
            let flags = r.u8()?;
            if flags > 3 {
                return Err(WireError::Invalid("frame flags"));
            }
            let key = r.array::<4>()?;
            let remaining = u64::from_le_bytes(r.array()?);
            let offset = r.u8()?;
            Some(CarriedFrame {
                opcode,
                fin: flags & 1 != 0,
                mask: (flags & 2 != 0).then_some(key),
                remaining,
                offset,
            })
        } else {
            None
        };
        let fragmented = r.u8()?;
        let compressed = r.flag("compressed")?;
        let budget = u64::from_le_bytes(r.array()?);
        let message = r.bytes(MAX_PARTIAL, "message in progress")?;
        let len = usize::from(r.u8()?);
        if len > MAX_CONTROL {
            return Err(WireError::TooLong("control frame in progress"));
        }
        let control = r.take(len)?.to_vec();
        Some(CarriedDecoder {
            header,
            frame,
            fragmented,
            budget,
            compressed,
            message,
            control,
        })
    } else {
        None
    };
    let held = r.bytes(MAX_HELD, "bytes held")?;
    let record = r.bytes(MAX_CUT_RECORD, "cut TLS record")?;
    Ok(ReadSide {
        decoder,
        held,
        record,
    })
}
