//! Reading a record's bytes (`wire`, `partial`): each value taken from the
//! front, every length bounded, a short record refused with
//! [`WireError::Truncated`], never a panic.

/// Why a record was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WireError {
    /// A version other than `wire::RECORD_VERSION`.
    #[error("record version {0}, not the one this process reads")]
    Version(u8),
    #[error("record cut short")]
    Truncated,
    #[error("{0} too long")]
    TooLong(&'static str),
    #[error("invalid {0}")]
    Invalid(&'static str),
    #[error("{0} bytes after the record")]
    Trailing(usize),
}

/// A record being read: what is left of it.
pub(super) struct Reader<'a>(pub(super) &'a [u8]);

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(super) fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }

    pub(super) fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(super) fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(super) fn i64(&mut self) -> Result<i64, WireError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// A u32-length-prefixed byte string of at most `max` bytes.
    pub(super) fn bytes(&mut self, max: usize, what: &'static str) -> Result<Vec<u8>, WireError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(WireError::TooLong(what));
        }
        Ok(self.take(len)?.to_vec())
    }

    pub(super) fn flag(&mut self, what: &'static str) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(WireError::Invalid(what)),
        }
    }
}
