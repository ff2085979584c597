//! Header-level pieces shared by both roles: comma-separated token lists, the
//! `Sec-WebSocket-Extensions` grammar, checks on the headers we write (against
//! header injection) and small no-allocation writers.

use std::fmt;

/// An error building a handshake message from caller-supplied pieces: writing
/// them would produce a malformed message or let a value inject headers.
///
/// Nothing is written when one of these is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// A header name is empty or contains a byte that is not an HTTP token
    /// character (RFC 9110 section 5.6.2).
    #[error("header name {0:?} is not an HTTP token")]
    HeaderName(String),
    /// A header value contains a control character (CR, LF, NUL, DEL, ...;
    /// horizontal tab is allowed), which could end the header early.
    #[error("value of header {0:?} contains a control character")]
    HeaderValue(String),
    /// The header is written by the handshake itself and cannot be supplied
    /// as an extra header.
    #[error("header {0:?} is written by the handshake itself")]
    ReservedHeader(String),
    /// A subprotocol is not an HTTP token (RFC 6455 section 4.1).
    #[error("subprotocol {0:?} is not an HTTP token")]
    InvalidProtocol(String),
    /// The subprotocol chosen by the server was not offered by the client.
    #[error("subprotocol {0:?} was not offered by the client")]
    ProtocolNotOffered(String),
    /// The status code cannot be used to refuse an upgrade (only 200..=599).
    #[error("status {0} cannot be used to refuse an upgrade")]
    InvalidStatus(u16),
    /// The host is empty or contains whitespace or control characters.
    #[error("invalid host {0:?}")]
    InvalidHost(String),
    /// The request target does not start with `/` or contains a byte that is
    /// not visible ASCII.
    #[error("invalid request target {0:?}")]
    InvalidTarget(String),
    /// The operating system's random number generator failed while generating
    /// a `Sec-WebSocket-Key`.
    #[error("cannot generate a Sec-WebSocket-Key: {0}")]
    Random(getrandom::Error),
}

/// One entry of a `Sec-WebSocket-Extensions` list: an extension name and its
/// parameters, e.g. `permessage-deflate; client_max_window_bits`.
///
/// Borrowed from the header value; parameters are parsed lazily by
/// [`params`](Self::params).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtensionOffer<'a> {
    name: &'a str,
    params: &'a str,
}

/// One parameter of an [`ExtensionOffer`]: `name` or `name=value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtensionParam<'a> {
    /// The parameter name, e.g. `client_max_window_bits`.
    pub name: &'a str,
    /// The value, if any. The surrounding quotes of a quoted-string value are
    /// removed (`server_max_window_bits="10"` gives `10`); backslash escapes
    /// inside it are left as they are.
    pub value: Option<&'a str>,
}

impl<'a> ExtensionOffer<'a> {
    /// Parses one list entry (no top-level comma); `None` if it is blank.
    fn parse(entry: &'a str) -> Option<Self> {
        let entry = trim_ows(entry);
        if entry.is_empty() {
            return None;
        }
        let (name, params) = entry.split_once(';').unwrap_or((entry, ""));
        Some(Self {
            name: trim_ows(name),
            params,
        })
    }

    /// The extension name, e.g. `permessage-deflate`.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The parameters, in order. Separating semicolons inside quoted strings
    /// are not separators.
    pub fn params(&self) -> impl Iterator<Item = ExtensionParam<'a>> + use<'a> {
        Split::new(self.params, b';').filter_map(|param| {
            let param = trim_ows(param);
            if param.is_empty() {
                return None;
            }
            Some(match param.split_once('=') {
                None => ExtensionParam {
                    name: param,
                    value: None,
                },
                Some((name, value)) => ExtensionParam {
                    name: trim_ows(name),
                    value: Some(unquote(trim_ows(value))),
                },
            })
        })
    }

    /// The first parameter called `name` (ASCII case-insensitive).
    pub fn param(&self, name: &str) -> Option<ExtensionParam<'a>> {
        self.params().find(|p| p.name.eq_ignore_ascii_case(name))
    }
}

/// Parses one `Sec-WebSocket-Extensions` header value into its offers.
///
/// Entries are separated by commas outside quoted strings; blank entries are
/// skipped. Used by [`UpgradeRequest::extensions`](super::UpgradeRequest::extensions)
/// and [`ServerAccepted::extensions`](super::ServerAccepted::extensions), which
/// also merge several header lines.
///
/// ```
/// use ringws::proto::handshake::parse_extensions;
/// let offers: Vec<_> = parse_extensions("permessage-deflate; server_max_window_bits=\"10\", x-foo")
///     .collect();
/// assert_eq!(offers[0].name(), "permessage-deflate");
/// assert_eq!(offers[0].param("server_max_window_bits").unwrap().value, Some("10"));
/// assert_eq!(offers[1].name(), "x-foo");
/// ```
pub fn parse_extensions(value: &str) -> impl Iterator<Item = ExtensionOffer<'_>> {
    Split::new(value, b',').filter_map(ExtensionOffer::parse)
}

/// Splits on `sep` bytes that are not inside a quoted string.
struct Split<'a> {
    rest: Option<&'a str>,
    sep: u8,
}

impl<'a> Split<'a> {
    fn new(s: &'a str, sep: u8) -> Self {
        Self { rest: Some(s), sep }
    }
}

impl<'a> Iterator for Split<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let s = self.rest?;
        let mut in_quotes = false;
        let mut escaped = false;
        for (i, &b) in s.as_bytes().iter().enumerate() {
            if in_quotes {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == b'"' {
                    in_quotes = false;
                }
            } else if b == b'"' {
                in_quotes = true;
            } else if b == self.sep {
                // `sep` is ASCII, so both indices are char boundaries.
                self.rest = Some(&s[i + 1..]);
                return Some(&s[..i]);
            }
        }
        self.rest = None;
        Some(s)
    }
}

/// Removes the quotes around a quoted-string.
fn unquote(value: &str) -> &str {
    match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => inner,
        None => value,
    }
}

/// Trims optional whitespace on both sides. Header values from httparse hold
/// no whitespace other than SP and HTAB, so this is exactly OWS trimming there.
pub(super) fn trim_ows(s: &str) -> &str {
    s.trim_ascii()
}

/// The non-empty, trimmed elements of a comma-separated list.
pub(super) fn list_items(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(trim_ows).filter(|t| !t.is_empty())
}

/// Whether a comma-separated list contains `token` (ASCII case-insensitive).
/// Works on bytes: the tokens looked for are ASCII, so the value need not be
/// UTF-8.
pub(super) fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Whether header `name` equals `lower` ignoring ASCII case, eight bytes at a
/// time.
///
/// `lower` must consist of lowercase letters, digits and `-`, and `name` must
/// be an HTTP token (httparse guarantees it). Every byte of `lower` then has
/// bit 0x20 set, and the only bytes `b` with `b | 0x20 == t` are `t` and its
/// upper-case letter (or a control character, which a token cannot contain),
/// so OR-ing 0x20 into `name` is an exact case fold.
pub(super) fn name_eq(name: &str, lower: &str) -> bool {
    const FOLD: u64 = u64::from_ne_bytes([0x20; 8]);
    let (name, lower) = (name.as_bytes(), lower.as_bytes());
    debug_assert!(
        lower
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
    );
    if name.len() != lower.len() {
        return false;
    }
    let word = |chunk: &[u8]| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        u64::from_ne_bytes(bytes)
    };
    let mut names = name.chunks_exact(8);
    let mut lowers = lower.chunks_exact(8);
    for (n, l) in names.by_ref().zip(lowers.by_ref()) {
        if word(n) | FOLD != word(l) {
            return false;
        }
    }
    names
        .remainder()
        .iter()
        .zip(lowers.remainder())
        .all(|(n, l)| n | 0x20 == *l)
}

/// Values (as UTF-8; other values skipped) of every header called `name`.
pub(super) fn str_values<'s, 'a>(
    headers: &'s [httparse::Header<'a>],
    name: &'static str,
) -> impl Iterator<Item = &'a str> + use<'s, 'a> {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
}

/// The trimmed value of the first header called `name`; `None` if it is
/// absent or not UTF-8.
pub(super) fn first_value<'a>(headers: &[httparse::Header<'a>], name: &str) -> Option<&'a str> {
    let header = headers.iter().find(|h| h.name.eq_ignore_ascii_case(name))?;
    std::str::from_utf8(header.value).ok().map(trim_ows)
}

/// Whether `b` is an HTTP token character (`tchar`).
const fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// Whether `s` is a non-empty HTTP token.
pub(super) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// Whether `s` can be written as a header value: no control characters other
/// than HTAB (so no CR, LF or NUL).
pub(super) fn is_safe_value(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// Checks caller-supplied extra headers before anything is written.
pub(super) fn check_headers(headers: &[(&str, &str)], reserved: &[&str]) -> Result<(), WriteError> {
    for &(name, value) in headers {
        check_header(name, value, reserved)?;
    }
    Ok(())
}

/// Checks one caller-supplied header.
pub(super) fn check_header(name: &str, value: &str, reserved: &[&str]) -> Result<(), WriteError> {
    if !is_token(name) {
        return Err(WriteError::HeaderName(name.to_owned()));
    }
    if !is_safe_value(value) {
        return Err(WriteError::HeaderValue(name.to_owned()));
    }
    if reserved.iter().any(|r| r.eq_ignore_ascii_case(name)) {
        return Err(WriteError::ReservedHeader(name.to_owned()));
    }
    Ok(())
}

/// Writes `name: value\r\n`.
pub(super) fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes `n` in decimal.
pub(super) fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Writes `HTTP/1.1 {status} {reason}\r\n`.
pub(super) fn push_status_line(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, usize::from(status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The standard reason phrase of common statuses, a generic one otherwise.
pub(super) fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Content Too Large",
        414 => "URI Too Long",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => match status / 100 {
            1 => "Informational",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            _ => "Server Error",
        },
    }
}

/// A [`fmt::Write`] that only counts bytes.
pub(super) struct CountingWriter(pub(super) usize);

impl fmt::Write for CountingWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

/// A [`fmt::Write`] appending to a byte vector.
pub(super) struct VecWriter<'a>(pub(super) &'a mut Vec<u8>);

impl fmt::Write for VecWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(offer: &ExtensionOffer<'_>) -> Vec<(String, Option<String>)> {
        offer
            .params()
            .map(|p| (p.name.to_owned(), p.value.map(str::to_owned)))
            .collect()
    }

    #[test]
    fn extension_list_with_params_quotes_and_multiple_offers() {
        let value = "permessage-deflate; client_max_window_bits; server_max_window_bits=\"10\", \
                     permessage-deflate ;server_no_context_takeover , x-webkit-deflate-frame";
        let offers: Vec<_> = parse_extensions(value).collect();
        assert_eq!(offers.len(), 3);
        assert_eq!(offers[0].name(), "permessage-deflate");
        assert_eq!(
            params(&offers[0]),
            vec![
                ("client_max_window_bits".to_owned(), None),
                ("server_max_window_bits".to_owned(), Some("10".to_owned())),
            ]
        );
        assert_eq!(offers[1].name(), "permessage-deflate");
        assert_eq!(
            params(&offers[1]),
            vec![("server_no_context_takeover".to_owned(), None)]
        );
        assert_eq!(offers[2].name(), "x-webkit-deflate-frame");
        assert_eq!(offers[2].params().count(), 0);
    }

    #[test]
    fn extension_separators_inside_quotes_are_not_separators() {
        let value = "x-a; p=\"1,2;3\"; q = 4, x-b; r=\"a\\\"b,c\"";
        let offers: Vec<_> = parse_extensions(value).collect();
        assert_eq!(offers.len(), 2);
        assert_eq!(
            params(&offers[0]),
            vec![
                ("p".to_owned(), Some("1,2;3".to_owned())),
                ("q".to_owned(), Some("4".to_owned())),
            ]
        );
        assert_eq!(offers[1].name(), "x-b");
        assert_eq!(offers[1].param("R").unwrap().value, Some("a\\\"b,c"));
    }

    #[test]
    fn extension_blank_entries_skipped() {
        assert_eq!(parse_extensions("").count(), 0);
        assert_eq!(parse_extensions(" , ,\t").count(), 0);
        let names: Vec<_> = parse_extensions(",a,,b;;x,").map(|o| o.name()).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn token_lists() {
        assert!(has_token(b"keep-alive, Upgrade", "upgrade"));
        assert!(has_token(b"\tUPGRADE\t", "upgrade"));
        assert!(has_token(b"\xff, upgrade", "upgrade"));
        assert!(!has_token(b"upgrades, keep-alive", "upgrade"));
        assert!(!has_token(b"", "upgrade"));
        assert_eq!(list_items(" a ,, b,").collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn name_eq_folds_case_exactly() {
        for lower in [
            "host",
            "sec-websocket-key",
            "sec-websocket-extensions",
            "a1-b2",
        ] {
            assert!(name_eq(lower, lower));
            assert!(name_eq(&lower.to_ascii_uppercase(), lower));
            let mixed: String = lower
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if i % 3 == 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect();
            assert!(name_eq(&mixed, lower));
            // Any single-byte change of a token character breaks equality.
            for at in 0..lower.len() {
                for b in (0u8..=0x7f).filter(|b| is_tchar(*b)) {
                    let mut other = lower.as_bytes().to_vec();
                    if other[at].eq_ignore_ascii_case(&b) {
                        continue;
                    }
                    other[at] = b;
                    let other = String::from_utf8(other).unwrap();
                    assert!(!name_eq(&other, lower), "{other} vs {lower}");
                }
            }
            assert!(!name_eq(&lower[1..], lower));
        }
    }

    #[test]
    fn header_checks() {
        assert!(check_header("X-Ok", "value\twith tab", &[]).is_ok());
        assert_eq!(
            check_header("X Bad", "v", &[]),
            Err(WriteError::HeaderName("X Bad".into()))
        );
        assert_eq!(
            check_header("", "v", &[]),
            Err(WriteError::HeaderName(String::new()))
        );
        for bad in ["a\r\nSet-Cookie: x", "a\nb", "a\rb", "a\0b", "a\x7fb"] {
            assert_eq!(
                check_header("X-Bad", bad, &[]),
                Err(WriteError::HeaderValue("X-Bad".into()))
            );
        }
        assert_eq!(
            check_header("content-LENGTH", "1", &["Content-Length"]),
            Err(WriteError::ReservedHeader("content-LENGTH".into()))
        );
    }

    #[test]
    fn decimal_and_status_line() {
        let mut out = Vec::new();
        for n in [0, 7, 10, 431, usize::MAX] {
            out.clear();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
        out.clear();
        push_status_line(&mut out, 431);
        assert_eq!(out, b"HTTP/1.1 431 Request Header Fields Too Large\r\n");
    }
}
