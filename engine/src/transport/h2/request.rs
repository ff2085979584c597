//! A request's header block, decoded and validated (RFC 9113 §8.2-8.3,
//! RFC 8441 §4): what reaches the runtime is well formed, so that nothing
//! above has to re-check HTTP/2's rules. The fields lie in one owned buffer,
//! reused from one request to the next: a request costs no allocation once
//! the buffer has grown to the connection's usual size (never past
//! SETTINGS_MAX_HEADER_LIST_SIZE: the decoder stops storing at that bound).

use std::ops::Range;

/// Why a header block is malformed (a stream error, PROTOCOL_ERROR).
pub(crate) type Malformed = &'static str;

/// A field's place in [`Request::buf`]: u32 offsets keep the index small.
type Span = (u32, u32);

/// A validated request.
#[derive(Debug, Default)]
pub(crate) struct Request {
    buf: Vec<u8>,
    method: Option<Span>,
    scheme: Option<Span>,
    authority: Option<Span>,
    path: Option<Span>,
    protocol: Option<Span>,
    /// Regular fields: name, value.
    fields: Vec<(Span, Span)>,
    /// A regular field was seen (a pseudo-header after one is malformed).
    regular: bool,
    content_length: Option<u64>,
}

/// Fields HTTP/2 forbids (RFC 9113 §8.2.2): they speak of the HTTP/1.1
/// connection, which HTTP/2 replaces.
pub(crate) const CONNECTION_SPECIFIC: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// RFC 9110 §5.6.2 `tchar`, lowercase only (RFC 9113 §8.2.1 forbids
/// uppercase names). Stricter than the RFC's minimum (no control, space,
/// uppercase, DEL or non-ASCII), which it allows: a name that is not a token
/// is not a valid field anywhere.
fn name_byte(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~')
}

/// A field name, lowercase token.
pub(crate) fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&b| name_byte(b))
}

/// A field value (RFC 9113 §8.2.1): no NUL, CR or LF, no leading or
/// trailing space or tab.
pub(crate) fn valid_value(value: &[u8]) -> bool {
    !value.iter().any(|&b| matches!(b, 0 | b'\r' | b'\n'))
        && !value.first().is_some_and(|b| matches!(b, b' ' | b'\t'))
        && !value.last().is_some_and(|b| matches!(b, b' ' | b'\t'))
}

/// A pseudo-header's value: visible ASCII, not empty (so that it is a
/// `&str` without a further check, and no empty `:path` or `:authority`
/// passes, RFC 9113 §8.3.1).
fn valid_pseudo_value(value: &[u8]) -> bool {
    !value.is_empty() && value.iter().all(|&b| (0x21..=0x7e).contains(&b))
}

/// Checks a regular field (of a request or of trailers) by its name and
/// value: what HTTP/2 forbids in any header block.
pub(crate) fn check_regular(name: &[u8], value: &[u8]) -> Result<(), Malformed> {
    if !valid_name(name) {
        return Err("invalid field name");
    }
    if !valid_value(value) {
        return Err("invalid field value");
    }
    if CONNECTION_SPECIFIC.iter().any(|c| c.as_bytes() == name) {
        return Err("connection-specific field");
    }
    if name == b"te" && value != b"trailers" {
        return Err("te other than trailers");
    }
    Ok(())
}

impl Request {
    /// Starts a new request, keeping the buffers' memory.
    pub(crate) fn begin(&mut self) {
        self.buf.clear();
        self.fields.clear();
        self.method = None;
        self.scheme = None;
        self.authority = None;
        self.path = None;
        self.protocol = None;
        self.regular = false;
        self.content_length = None;
    }

    /// Frees the buffers once a request made them larger than `keep` bytes
    /// (an idle connection should not hold a large request's memory).
    pub(crate) fn trim(&mut self, keep: usize) {
        if self.buf.capacity() > keep {
            self.buf = Vec::new();
        }
        if self.fields.capacity() > keep / 32 {
            self.fields = Vec::new();
        }
    }

    fn store(&mut self, bytes: &[u8]) -> Span {
        let start = self.buf.len() as u32;
        self.buf.extend_from_slice(bytes);
        (start, self.buf.len() as u32)
    }

    /// Adds one decoded field, in order.
    pub(crate) fn push(&mut self, name: &[u8], value: &[u8]) -> Result<(), Malformed> {
        if let Some(pseudo) = name.strip_prefix(b":") {
            if self.regular {
                return Err("pseudo-header after a regular field");
            }
            if !valid_pseudo_value(value) {
                return Err("invalid pseudo-header value");
            }
            let slot = match pseudo {
                b"method" => &self.method,
                b"scheme" => &self.scheme,
                b"authority" => &self.authority,
                b"path" => &self.path,
                b"protocol" => &self.protocol,
                _ => return Err("unknown pseudo-header"),
            };
            if slot.is_some() {
                return Err("repeated pseudo-header");
            }
            let span = Some(self.store(value));
            match pseudo {
                b"method" => self.method = span,
                b"scheme" => self.scheme = span,
                b"authority" => self.authority = span,
                b"path" => self.path = span,
                _ => self.protocol = span,
            }
            return Ok(());
        }
        check_regular(name, value)?;
        self.regular = true;
        if name == b"content-length" {
            let length = parse_length(value).ok_or("invalid content-length")?;
            if self.content_length.is_some_and(|l| l != length) {
                return Err("conflicting content-length");
            }
            self.content_length = Some(length);
        }
        let name = self.store(name);
        let value = self.store(value);
        self.fields.push((name, value));
        Ok(())
    }

    /// Checks the request as a whole once its block is decoded.
    pub(crate) fn finish(&self) -> Result<(), Malformed> {
        if self.method.is_none() {
            return Err("no :method");
        }
        let connect = self.method() == "CONNECT";
        if self.protocol.is_some() {
            // Extended CONNECT (RFC 8441 §4).
            if !connect {
                return Err(":protocol without CONNECT");
            }
            if self.scheme.is_none() || self.path.is_none() || self.authority.is_none() {
                return Err("extended CONNECT without :scheme, :path or :authority");
            }
        } else if connect {
            // Plain CONNECT (RFC 9113 §8.5).
            if self.authority.is_none() {
                return Err("CONNECT without :authority");
            }
            if self.scheme.is_some() || self.path.is_some() {
                return Err("CONNECT with :scheme or :path");
            }
        } else if self.scheme.is_none() || self.path.is_none() {
            return Err("no :scheme or :path");
        }
        Ok(())
    }

    fn text(&self, span: Span) -> &str {
        // Every stored pseudo value and name is ASCII (checked in `push`).
        std::str::from_utf8(self.bytes(span)).unwrap_or_default()
    }

    fn bytes(&self, (start, end): Span) -> &[u8] {
        self.buf
            .get(Range {
                start: start as usize,
                end: end as usize,
            })
            .unwrap_or_default()
    }

    pub fn method(&self) -> &str {
        self.method.map_or("", |s| self.text(s))
    }

    #[cfg(test)]
    pub fn scheme(&self) -> Option<&str> {
        self.scheme.map(|s| self.text(s))
    }

    pub fn authority(&self) -> Option<&str> {
        self.authority.map(|s| self.text(s))
    }

    pub fn path(&self) -> Option<&str> {
        self.path.map(|s| self.text(s))
    }

    pub fn protocol(&self) -> Option<&str> {
        self.protocol.map(|s| self.text(s))
    }

    /// The regular (non-pseudo) fields in order: lowercase name, raw value.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.fields
            .iter()
            .map(|&(name, value)| (self.text(name), self.bytes(value)))
    }

    /// The first field named `name` (lowercase).
    pub fn field(&self, name: &str) -> Option<&[u8]> {
        self.fields()
            .find(|&(n, _)| n == name)
            .map(|(_, value)| value)
    }

    /// The request's content-length, if it gave one: the DATA it sends must
    /// add up to it (RFC 9113 §8.1.1).
    pub(crate) fn content_length(&self) -> Option<u64> {
        self.content_length
    }
}

/// A content-length: decimal digits, no sign, no overflow.
fn parse_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 19 {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(fields: &[(&str, &str)]) -> Result<Request, Malformed> {
        let mut r = Request::default();
        r.begin();
        for (n, v) in fields {
            r.push(n.as_bytes(), v.as_bytes())?;
        }
        r.finish()?;
        Ok(r)
    }

    #[test]
    fn content_length_parses_and_conflicts_are_refused() {
        assert_eq!(parse_length(b"0"), Some(0));
        assert_eq!(parse_length(b"1234"), Some(1234));
        assert_eq!(parse_length(b""), None);
        assert_eq!(parse_length(b"-1"), None);
        assert_eq!(parse_length(b"99999999999999999999"), None);
        let base = [(":method", "POST"), (":scheme", "https"), (":path", "/")];
        let r = build(
            &[
                &base[..],
                &[("content-length", "5"), ("content-length", "5")],
            ]
            .concat(),
        );
        assert_eq!(r.unwrap().content_length(), Some(5));
        assert!(
            build(
                &[
                    &base[..],
                    &[("content-length", "5"), ("content-length", "6")]
                ]
                .concat()
            )
            .is_err()
        );
    }

    #[test]
    fn values_and_names_are_checked() {
        assert!(!valid_value(b" lead"));
        assert!(!valid_value(b"trail\t"));
        assert!(!valid_value(b"a\r\nb"));
        assert!(valid_value(b"in side"));
        assert!(valid_value(b""));
        assert!(!valid_name(b"Upper"));
        assert!(!valid_name(b"a:b"));
        assert!(!valid_name(b""));
        assert!(valid_name(b"x-ok_1"));
    }
}
