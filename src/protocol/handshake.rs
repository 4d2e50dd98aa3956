//! The opening handshake (RFC 6455 §4), sans-io, for both roles: the client's request and
//! the check of the server's answer; the server's check of a request (in the order, and
//! with the messages, of the original afWebSockets) and its answers.

// The HTTP exchange itself (keys, requests, responses: SHA-1, base64, httparse) is the
// native backend's only: in the browser, the browser shakes hands.
#[cfg(not(target_arch = "wasm32"))]
mod exchange;
#[cfg(not(target_arch = "wasm32"))]
pub use exchange::*;

/// A request or response head longer than this is refused.
pub const MAX_HEAD_SIZE: usize = 16 * 1024;

/// Why an opening handshake failed. [`HandshakeError::status`] is the HTTP status a server
/// answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The request is not HTTP/1.1 or later.
    #[error("Invalid HTTP version; expected 'HTTP/1.1' or higher but got '{0}'")]
    InvalidVersion(String),
    /// The request method is not GET.
    #[error("Invalid HTTP method; expected 'GET' but got '{0}'")]
    InvalidMethod(String),
    /// A required header is absent.
    #[error("Absent '{name}' HTTP header; not found in [{}]", present.join(", "))]
    MissingHeader {
        /// The missing header.
        name: String,
        /// The names of the headers that were present.
        present: Vec<String>,
    },
    /// A header has the wrong value.
    #[error("Invalid '{name}' HTTP header; expected '{expected}' but got '{actual}'")]
    InvalidHeader {
        /// The header.
        name: String,
        /// What it should contain.
        expected: String,
        /// What it contained.
        actual: String,
    },
    /// `Sec-WebSocket-Version` is not 13 (answered 426 with `Sec-WebSocket-Version: 13`).
    #[error("Invalid 'Sec-WebSocket-Version' HTTP header; expected '13' but got '{0}'")]
    UnsupportedVersion(String),
    /// `Sec-WebSocket-Key` is not the base64 of 16 bytes.
    #[error(
        "Invalid 'Sec-WebSocket-Key' HTTP header; expected the base64 of 16 bytes but got '{0}'"
    )]
    InvalidKey(String),
    /// The `Origin` matches none of the allowed origins (answered 403).
    #[error("Invalid 'Origin' HTTP header; '{origin}' does not match list of allowed origins - [{}]", allowed.join(", "))]
    OriginNotAllowed {
        /// The request's origin.
        origin: String,
        /// The allowed origin patterns.
        allowed: Vec<String>,
    },
    /// The head is larger than [`MAX_HEAD_SIZE`] (answered 431).
    #[error("the HTTP head is larger than {MAX_HEAD_SIZE} bytes")]
    HeadTooLarge,
    /// The head is not valid HTTP.
    #[error("malformed HTTP head: {0}")]
    Malformed(String),
    /// The server did not answer 101. The message ends with the start of the response's
    /// body, where it had one: servers often say there why they refused.
    #[error(
        "Bad HTTP response code; expected '101 - Switching Protocols' but got '{code} - {reason}'{}",
        body_excerpt(body)
    )]
    BadStatus {
        /// The status code.
        code: u16,
        /// The reason phrase.
        reason: String,
        /// The first bytes of the response's body (at most [`MAX_ERROR_BODY`]), empty
        /// if it had none.
        body: Vec<u8>,
    },
    /// `Sec-WebSocket-Accept` does not match the key.
    #[error("Bad 'Sec-WebSocket-Accept' HTTP header; does not match computed digest")]
    BadAccept,
    /// The server selected a subprotocol the client did not offer.
    #[error("the server selected the subprotocol '{0}', which was not offered")]
    UnexpectedProtocol(String),
    /// The server answered with extensions although none were offered.
    #[error("the server selected extensions '{0}', but none were offered")]
    UnexpectedExtensions(String),
    /// The server's `Sec-WebSocket-Extensions` answer is not a valid answer to our
    /// permessage-deflate offer (RFC 7692 §5).
    #[error("invalid 'Sec-WebSocket-Extensions' answer '{header}': {why}")]
    InvalidExtensions {
        /// The header value.
        header: String,
        /// What is wrong with it.
        why: String,
    },
    /// The URL cannot be requested (no host).
    #[error("cannot build a request for the URL '{0}'")]
    InvalidUrl(String),
    /// A header of the request to build would not be one valid header: a subprotocol
    /// that is not a token, or a value with a CR, LF or NUL in it (which would inject
    /// headers of its own).
    #[error("cannot send the '{name}' header {value:?}: {why}")]
    UnsendableHeader {
        /// The header's name.
        name: String,
        /// The offending value (or name).
        value: String,
        /// What is wrong with it.
        why: String,
    },
}

/// How much of a refused handshake's response body [`HandshakeError::BadStatus`] keeps.
pub const MAX_ERROR_BODY: usize = 512;

/// `": "` and the body for an error message: lossy UTF-8, control characters escaped so
/// the message stays one line, and "…" when the body was cut at [`MAX_ERROR_BODY`].
fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim_end_matches(['\r', '\n']);
    if text.is_empty() {
        return String::new();
    }
    let mut out = String::with_capacity(text.len() + 4);
    out.push_str(": ");
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    if body.len() >= MAX_ERROR_BODY {
        out.push('…');
    }
    out
}

impl HandshakeError {
    /// The HTTP status of this error. For [`HandshakeError::BadStatus`] (a client's
    /// error), the status the server answered; otherwise the status a server answers this
    /// error with: 403 for a refused origin, 426 for an unsupported version, 431 for an
    /// oversized head, 400 otherwise.
    ///
    /// ```
    /// use unisock::protocol::HandshakeError;
    /// assert_eq!(HandshakeError::UnsupportedVersion("8".into()).status().as_u16(), 426);
    /// assert_eq!(HandshakeError::InvalidMethod("POST".into()).status().as_u16(), 400);
    /// let refused = HandshakeError::BadStatus { code: 503, reason: "Busy".into(), body: vec![] };
    /// assert_eq!(refused.status().as_u16(), 503);
    /// ```
    pub fn status(&self) -> http::StatusCode {
        match self {
            Self::BadStatus { code, .. } => {
                http::StatusCode::from_u16(*code).unwrap_or(http::StatusCode::BAD_GATEWAY)
            }
            Self::OriginNotAllowed { .. } => http::StatusCode::FORBIDDEN,
            Self::UnsupportedVersion(_) => http::StatusCode::UPGRADE_REQUIRED,
            Self::HeadTooLarge => http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            _ => http::StatusCode::BAD_REQUEST,
        }
    }

    /// The first bytes (at most [`MAX_ERROR_BODY`]) of the body of a response that
    /// refused the upgrade ([`HandshakeError::BadStatus`]); `None` for other errors.
    ///
    /// ```
    /// use unisock::protocol::HandshakeError;
    /// let refused = HandshakeError::BadStatus {
    ///     code: 400,
    ///     reason: "Bad Request".into(),
    ///     body: b"missing subprotocol".to_vec(),
    /// };
    /// assert_eq!(refused.response_body(), Some(&b"missing subprotocol"[..]));
    /// assert!(refused.to_string().ends_with("'400 - Bad Request': missing subprotocol"));
    /// ```
    pub fn response_body(&self) -> Option<&[u8]> {
        match self {
            Self::BadStatus { body, .. } => Some(body),
            _ => None,
        }
    }
}

/// Why `name` is not an RFC 7230 token (`tchar`: letters, digits and
/// ``!#$%&'*+-.^_`|~``), as an error message's end; `None` if it is one. Subprotocol
/// names must be tokens (RFC 6455 §4.1): anything else could split or inject headers.
pub(crate) fn token_problem(name: &str) -> Option<String> {
    let bad = name.chars().find(|&c| !is_tchar(c));
    match bad {
        _ if name.is_empty() => Some("it is empty".into()),
        None => None,
        Some('\r' | '\n') => Some("it contains a CR or LF".into()),
        Some('\0') => Some("it contains a NUL".into()),
        Some(c) if c.is_ascii_control() => {
            Some(format!("it contains the control character {:?}", c))
        }
        Some(c) if c.is_ascii() => Some(format!("it contains {c:?} (a separator)")),
        Some(c) => Some(format!("it contains {c:?}, which is not ASCII")),
    }
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// The first subprotocol of an offer that cannot be sent, and why: not a token, or
/// offered twice (as a browser, which throws a `SyntaxError` for either).
pub(crate) fn protocols_problem<'a>(protocols: &[&'a str]) -> Option<(&'a str, String)> {
    protocols.iter().enumerate().find_map(|(i, &p)| {
        token_problem(p)
            .or_else(|| {
                protocols[..i]
                    .contains(&p)
                    .then(|| "it is offered twice".into())
            })
            .map(|why| (p, why))
    })
}

/// Whether `origin` (a request's `Origin` header) matches `pattern`, an allowed origin of
/// the form `scheme://host[:port]`:
///
/// - the scheme must be the same, and the host the same label by label (both compared
///   ASCII case-insensitively);
/// - a `*` in a host label matches any run of characters within that label, never a dot:
///   `http://example.*` matches `http://example.com` but not `http://example.evil.org`;
/// - a leading `*.` label matches one or more labels: `https://*.example.com` matches
///   `https://a.example.com` and `https://a.b.example.com`, but neither
///   `https://example.com` nor `https://evilexample.com`;
/// - a port in the pattern must be the origin's (`*` matches any port, or none); no port
///   means the scheme's default port (80 for `http`/`ws`, 443 for `https`/`wss`), which
///   browsers leave out of `Origin`: `http://localhost` matches `http://localhost` and
///   `http://localhost:80`, not `http://localhost:8069`;
/// - `*` alone matches every origin but `null`; the origin `null` (sandboxed frames,
///   `file:` pages; any site can make one) only matches the pattern `null`.
///
/// An origin or pattern that is not of this form (a path, user info, a `*` in the
/// scheme, a `?`, which the original's globs matched any character with) matches
/// nothing, so a mistyped allow-list refuses rather than allows.
///
/// ```
/// use unisock::protocol::handshake::origin_matches;
/// assert!(origin_matches("https://*.example.com", "https://chat.example.com"));
/// assert!(!origin_matches("https://*.example.com", "https://example.com.evil.org"));
/// assert!(origin_matches("http://localhost:*", "http://localhost:8069"));
/// assert!(!origin_matches("http://example.*", "http://example.evil.org"));
/// ```
pub fn origin_matches(pattern: &str, origin: &str) -> bool {
    if origin == "null" || pattern == "null" {
        return origin == pattern;
    }
    if pattern == "*" {
        return true;
    }
    // A `*` in an origin is no wildcard, and no host has one.
    if origin.contains('*') {
        return false;
    }
    let (Some(p), Some(o)) = (Origin::parse(pattern), Origin::parse(origin)) else {
        return false;
    };
    if !p.scheme.eq_ignore_ascii_case(o.scheme) || o.port.is_some_and(|port| port == "*") {
        return false;
    }
    let default = default_port(p.scheme);
    let port_ok = match (p.port, o.port) {
        (Some("*"), _) => true,
        (p_port, o_port) => {
            let number = |port: Option<&str>| match port {
                Some(port) => port.parse::<u16>().ok(),
                None => default,
            };
            // Parsed, so `:080` is `:80`; an unknown scheme without ports compares `None`s.
            number(p_port) == number(o_port)
        }
    };
    port_ok && host_matches(p.host, o.host)
}

/// An origin or origin pattern cut into its parts; the port is kept as written.
struct Origin<'a> {
    scheme: &'a str,
    host: &'a str,
    port: Option<&'a str>,
}

impl<'a> Origin<'a> {
    /// `scheme://host[:port]`, with a well-formed scheme, a non-empty host without empty
    /// labels or URL delimiters, and a port of digits (or `*`, left to the caller).
    fn parse(s: &'a str) -> Option<Self> {
        let (scheme, rest) = s.split_once("://")?;
        let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
        if !scheme_ok {
            return None;
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (addr, after) = v6.split_once(']')?;
            let host = &rest[..addr.len() + 2];
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':')?)),
            }
        } else {
            match rest.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        let port_ok = port.is_none_or(|p| {
            p == "*" || (!p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok())
        });
        let host_ok = !host.is_empty()
            && !host.split('.').any(str::is_empty)
            && !host.contains(['/', '?', '#', '@', '\\', ' ']);
        (port_ok && host_ok).then_some(Self { scheme, host, port })
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// Label by label, from the right; a leading `*` label takes one or more labels.
fn host_matches(pattern: &str, host: &str) -> bool {
    let mut p: Vec<&str> = pattern.split('.').collect();
    let h: Vec<&str> = host.split('.').collect();
    let subdomains = p.len() > 1 && p[0] == "*";
    if subdomains {
        p.remove(0);
    }
    let fits = if subdomains {
        h.len() > p.len()
    } else {
        h.len() == p.len()
    };
    fits && p
        .iter()
        .rev()
        .zip(h.iter().rev())
        .all(|(p, h)| label_matches(p, h))
}

/// A glob over one label: `*` any run (within the label), all else literal, ASCII
/// case-insensitive. Greedy with backtracking to the last star: O(len(p) * len(s)).
fn label_matches(pattern: &str, label: &str) -> bool {
    let p = pattern.as_bytes();
    let s = label.as_bytes();
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(c) if c.eq_ignore_ascii_case(&s[si]) => {
                pi += 1;
                si += 1;
            }
            _ => match star {
                Some((sp, ss)) => {
                    pi = sp + 1;
                    si = ss + 1;
                    star = Some((sp, ss + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    /// A TLS record where an HTTP answer was due (a `ws://` URL for a TLS-only server) is
    /// named as such; other garbage is reported as the HTTP parser sees it.
    #[test]
    fn a_tls_answer_to_a_plain_request_suggests_wss() {
        let alert = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x46];
        let err = parse_response(&alert).unwrap_err();
        assert!(err.to_string().contains("did you mean wss://?"), "{err}");
        let err = parse_response(b"\x01\x02 not http\r\n\r\n").unwrap_err();
        assert!(!err.to_string().contains("wss://"), "{err}");
    }

    const KEY: &str = "L3vSWlgMnhQWv2FldG/QTQ==";

    fn request(lines: &[&str]) -> http::Request<()> {
        let head = format!("{}\r\n\r\n", lines.join("\r\n"));
        parse_request(head.as_bytes()).unwrap().unwrap().0
    }

    fn good() -> Vec<&'static str> {
        vec![
            "GET /ws HTTP/1.1",
            "Host: localhost:8070",
            "Connection: keep-alive, Upgrade",
            "Upgrade: WebSocket",
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Key: L3vSWlgMnhQWv2FldG/QTQ==",
        ]
    }

    fn without(name: &str) -> Vec<&'static str> {
        good()
            .into_iter()
            .filter(|l| !l.starts_with(name))
            .collect()
    }

    #[test]
    fn rfc_accept_vectors() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(accept_key(KEY.as_bytes()), "2/qvz8Hucx3K4CxvMRjwgD42aoE=");
    }

    #[test]
    fn success() {
        let accept = validate_request(&request(&good()), None).unwrap();
        assert_eq!(accept.accept, "2/qvz8Hucx3K4CxvMRjwgD42aoE=");
        let head = String::from_utf8(response_101(&accept.accept, None, &[])).unwrap();
        assert!(head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        // Header names are case-insensitive; `http` writes them in lower case.
        assert!(head.contains("upgrade: websocket\r\n"));
        assert!(head.contains("connection: Upgrade\r\n"));
        assert!(head.contains("sec-websocket-accept: 2/qvz8Hucx3K4CxvMRjwgD42aoE=\r\n"));
    }

    #[test]
    fn http_version_must_be_1_1_or_higher() {
        let mut lines = good();
        lines[0] = "GET /ws HTTP/1.0";
        let err = validate_request(&request(&lines), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid HTTP version; expected 'HTTP/1.1' or higher but got 'HTTP/1.0'"
        );
        let mut req = request(&good());
        *req.version_mut() = http::Version::HTTP_2;
        assert!(validate_request(&req, None).is_ok());
    }

    #[test]
    fn method_must_be_get() {
        let mut lines = good();
        lines[0] = "POST /ws HTTP/1.1";
        let err = validate_request(&request(&lines), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid HTTP method; expected 'GET' but got 'POST'"
        );
    }

    #[test]
    fn required_headers() {
        for name in [
            "Host",
            "Connection",
            "Upgrade",
            "Sec-WebSocket-Version",
            "Sec-WebSocket-Key",
        ] {
            let err = validate_request(&request(&without(name)), None).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(&format!("Absent '{name}' HTTP header; not found in [")),
                "{err}"
            );
            assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn connection_must_contain_upgrade() {
        let mut lines = without("Connection");
        lines.push("Connection: wotever");
        let err = validate_request(&request(&lines), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid 'Connection' HTTP header; expected 'Upgrade' but got 'wotever'"
        );
    }

    #[test]
    fn upgrade_must_be_websocket() {
        let mut lines = without("Upgrade");
        lines.push("Upgrade: h2c");
        assert!(matches!(
            validate_request(&request(&lines), None),
            Err(HandshakeError::InvalidHeader { .. })
        ));
    }

    #[test]
    fn version_must_be_13_and_426_names_it() {
        let mut lines = without("Sec-WebSocket-Version");
        lines.push("Sec-WebSocket-Version: 12");
        let err = validate_request(&request(&lines), None).unwrap_err();
        assert_eq!(err.status(), http::StatusCode::UPGRADE_REQUIRED);
        let answer = String::from_utf8(error_response(&err)).unwrap();
        assert!(answer.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(answer.contains("Sec-WebSocket-Version: 13\r\n"));
    }

    #[test]
    fn key_must_be_16_bytes_of_base64() {
        let mut lines = without("Sec-WebSocket-Key");
        lines.push("Sec-WebSocket-Key: c2hvcnQ=");
        assert!(matches!(
            validate_request(&request(&lines), None),
            Err(HandshakeError::InvalidKey(_))
        ));
    }

    #[test]
    fn allowed_origins() {
        let any = vec!["*".to_string()];
        let err = validate_request(&request(&good()), Some(&any)).unwrap_err();
        assert!(
            err.to_string().starts_with("Absent 'Origin' HTTP header"),
            "{err}"
        );
        assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);

        let mut lines = good();
        lines.push("Origin: alienfactory.co.uk");
        let only = vec!["alienfactory.com".to_string()];
        let err = validate_request(&request(&lines), Some(&only)).unwrap_err();
        assert_eq!(err.status(), http::StatusCode::FORBIDDEN);
        assert_eq!(
            err.to_string(),
            "Invalid 'Origin' HTTP header; 'alienfactory.co.uk' does not match list of allowed origins - [alienfactory.com]"
        );
        assert!(validate_request(&request(&lines), Some(&any)).is_ok());
    }

    #[test]
    fn a_wildcard_does_not_cross_a_dot() {
        // The glob of the original matched any run, dots included: an attacker's
        // `example.evil.org` passed an allow-list written for `example.*`.
        assert!(origin_matches("http://example.*", "http://example.com"));
        assert!(!origin_matches(
            "http://example.*",
            "http://example.evil.org"
        ));
        assert!(!origin_matches("http://ex*.com", "http://ex.evil.com"));
    }

    #[test]
    fn origin_patterns() {
        // (pattern, origin, matches)
        let cases = [
            // Exact, ASCII case-insensitive in scheme and host.
            ("https://example.com", "https://example.com", true),
            ("https://Example.COM", "HTTPS://example.com", true),
            ("https://example.com", "https://example.org", false),
            ("https://example.com", "https://www.example.com", false),
            ("https://example.com", "https://example.com.evil.org", false),
            ("https://example.com", "https://evilexample.com", false),
            // The scheme must match exactly.
            ("https://example.com", "http://example.com", false),
            ("http://example.com", "https://example.com", false),
            // `*` within one label.
            ("http://example.*", "http://example.org", true),
            ("http://example.*", "http://example.co.uk", false),
            ("http://example.*", "http://example", false),
            (
                "https://app-*.example.com",
                "https://app-7.example.com",
                true,
            ),
            (
                "https://app-*.example.com",
                "https://app-7.evil.example.com",
                false,
            ),
            (
                "https://app-*.example.com",
                "https://api.example.com",
                false,
            ),
            ("https://*", "https://localhost", true),
            ("https://*", "https://example.com", false),
            // A leading `*.` label: one or more subdomain labels, never the bare domain.
            ("https://*.example.com", "https://a.example.com", true),
            ("https://*.example.com", "https://a.b.example.com", true),
            ("https://*.example.com", "https://example.com", false),
            ("https://*.example.com", "https://evilexample.com", false),
            ("https://*.example.com", "https://a.evilexample.com", false),
            (
                "https://*.example.com",
                "https://a.example.com.evil.org",
                false,
            ),
            ("https://*.example.*", "https://a.example.org", true),
            // Ports: none in the pattern means the scheme's default port.
            ("http://localhost", "http://localhost", true),
            ("http://localhost", "http://localhost:80", true),
            ("http://localhost", "http://localhost:8069", false),
            ("https://example.com", "https://example.com:443", true),
            ("https://example.com:443", "https://example.com", true),
            ("http://localhost:8069", "http://localhost:8069", true),
            ("http://localhost:8069", "http://localhost:8070", false),
            ("http://localhost:8069", "http://localhost", false),
            ("http://localhost:*", "http://localhost:8070", true),
            ("http://localhost:*", "http://localhost", true),
            ("http://localhost:*", "http://evil.org:8070", false),
            ("app://x", "app://x", true),
            ("app://x", "app://x:1", false),
            // IP literals.
            ("http://127.0.0.1:8069", "http://127.0.0.1:8069", true),
            ("http://127.0.0.1:8069", "http://127.0.0.2:8069", false),
            ("http://[::1]:8069", "http://[::1]:8069", true),
            ("http://[::1]:8069", "http://[::2]:8069", false),
            // `*` alone: any origin but `null`.
            ("*", "https://example.com", true),
            ("*", "alienfactory.co.uk", true),
            ("*", "null", false),
            // `null` (sandboxed frames, files) only matches a literal `null` pattern.
            ("null", "null", true),
            ("https://*", "null", false),
            ("null", "https://null", false),
            // Not origins, so never matched by a pattern: a path, user info, junk.
            ("https://example.com", "https://example.com/", false),
            ("https://example.com", "https://user@example.com", false),
            ("https://example.com", "https://example.com:x", false),
            ("https://example.com", "https://example.com:99999", false),
            ("https://example.com", "https://example..com", false),
            ("https://example.com", "example.com", false),
            ("https://example.com", "", false),
            ("https://*.example.com", "https://*.example.com", false),
            ("http://localhost:*", "http://localhost:*", false),
            // A malformed pattern matches nothing.
            ("example.com", "example.com", false),
            ("https://example.com/", "https://example.com", false),
            ("http*://example.com", "http://example.com", false),
            ("", "", false),
        ];
        for (pattern, origin, want) in cases {
            assert_eq!(
                origin_matches(pattern, origin),
                want,
                "{pattern:?} against {origin:?}"
            );
        }
    }

    #[test]
    fn origin_matching_stays_linear_on_hostile_input() {
        let pattern = format!("https://{}b.com", "a*".repeat(30));
        let origin = format!("https://{}.com", "a".repeat(5000));
        assert!(!origin_matches(&pattern, &origin));
    }

    #[test]
    fn parse_request_partial_complete_too_large_and_pipelined() {
        let head = "GET /x HTTP/1.1\r\nHost: h\r\n\r\n";
        for cut in 0..head.len() {
            assert!(
                parse_request(&head.as_bytes()[..cut]).unwrap().is_none(),
                "cut {cut}"
            );
        }
        let mut with_frame = head.as_bytes().to_vec();
        with_frame.extend_from_slice(&[0x81, 0x80]);
        let (_, len) = parse_request(&with_frame).unwrap().unwrap();
        assert_eq!(len, head.len());
        let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD_SIZE));
        assert!(matches!(
            parse_request(huge.as_bytes()),
            Err(HandshakeError::HeadTooLarge)
        ));
        assert!(matches!(
            parse_request(b"\x01\x02 nonsense\r\n\r\n"),
            Err(HandshakeError::Malformed(_))
        ));
    }

    #[test]
    fn client_request_bytes() {
        let url = url::Url::parse("ws://host:8080/p?q=1").unwrap();
        let req = String::from_utf8(
            client_request(&url, "KEY", &["a", "b"], Some("http://o"), &[("X-A", "1")]).unwrap(),
        )
        .unwrap();
        assert_eq!(
            req,
            "GET /p?q=1 HTTP/1.1\r\nHost: host:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: KEY\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: a, b\r\nOrigin: http://o\r\nX-A: 1\r\n\r\n"
        );
        let url = url::Url::parse("wss://host:443").unwrap();
        let req = String::from_utf8(client_request(&url, "K", &[], None, &[]).unwrap()).unwrap();
        assert!(req.starts_with("GET / HTTP/1.1\r\nHost: host\r\n"), "{req}");
        let url = url::Url::parse("ws://[::1]:9001/").unwrap();
        let req = String::from_utf8(client_request(&url, "K", &[], None, &[]).unwrap()).unwrap();
        assert!(req.contains("Host: [::1]:9001\r\n"), "{req}");
    }

    #[test]
    fn subprotocol_names_must_be_tokens_offered_once() {
        for good in ["chat", "chat.v2", "a!#$%&'*+-.^_`|~9", "X"] {
            assert_eq!(token_problem(good), None, "{good}");
        }
        let bad = [
            ("", "it is empty"),
            ("a\r\nX-Injected: yes", "it contains a CR or LF"),
            ("a\nb", "it contains a CR or LF"),
            ("a\0b", "it contains a NUL"),
            ("a\tb", "it contains the control character '\\t'"),
            ("a\u{7f}", "it contains the control character '\\u{7f}'"),
            ("x,chat.v2", "it contains ',' (a separator)"),
            ("a b", "it contains ' ' (a separator)"),
            ("a/b", "it contains '/' (a separator)"),
            ("a\"b", "it contains '\"' (a separator)"),
            ("chät", "it contains 'ä', which is not ASCII"),
        ];
        for (name, why) in bad {
            assert_eq!(token_problem(name).as_deref(), Some(why), "{name:?}");
        }
        assert_eq!(protocols_problem(&["a", "b"]), None);
        assert_eq!(
            protocols_problem(&["a", "b", "a"]),
            Some(("a", "it is offered twice".to_string()))
        );
        // Case matters (names are compared as they are, as by a browser).
        assert_eq!(protocols_problem(&["chat", "Chat"]), None);
        assert_eq!(
            protocols_problem(&["ok", "x y"]),
            Some(("x y", "it contains ' ' (a separator)".to_string()))
        );
    }

    #[test]
    fn client_request_refuses_what_would_inject_headers() {
        let url = url::Url::parse("ws://host/").unwrap();
        let err = client_request(&url, "K", &["a\r\nX-Injected: yes"], None, &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"cannot send the 'Sec-WebSocket-Protocol' header "a\r\nX-Injected: yes": it contains a CR or LF"#
        );
        assert!(client_request(&url, "K", &["a", "a"], None, &[]).is_err());
        let err = client_request(&url, "K", &[], Some("http://o\0"), &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"cannot send the 'Origin' header "http://o\0": it contains a NUL"#
        );
        let err = client_request(&url, "K", &[], None, &[("X-A", "1\nX-B: 2")]).unwrap_err();
        assert!(
            matches!(err, HandshakeError::UnsendableHeader { .. }),
            "{err}"
        );
        let err = client_request(&url, "K", &[], None, &[("X A", "1")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"cannot send the 'X A' header "X A": the name is not a token: it contains ' ' (a separator)"#
        );
        assert!(client_request(&url, "K\r\n", &[], None, &[]).is_err());
        // Space, tab and obs-text are allowed in values.
        let req = client_request(&url, "K", &[], None, &[("X-A", "a b\tc é")]).unwrap();
        assert!(String::from_utf8(req)
            .unwrap()
            .contains("X-A: a b\tc é\r\n"));
    }

    #[test]
    fn a_refusal_reads_its_body_by_its_framing() {
        let framing = |head: &str| BodyFraming::of(&response(&[head]));
        let with = |lines: &[&str]| BodyFraming::of(&response(lines));
        assert_eq!(framing("HTTP/1.1 204 No Content"), BodyFraming::Empty);
        assert_eq!(framing("HTTP/1.1 400 Bad Request"), BodyFraming::UntilClose);
        let length = with(&["HTTP/1.1 400 Bad Request", "Content-Length: 5"]);
        assert_eq!(length, BodyFraming::Length(5));
        assert!(!length.is_complete(b"abcd"));
        assert!(length.is_complete(b"abcdeXYZ"));
        assert_eq!(length.body(b"abcdeXYZ"), b"abcde");
        let chunked = with(&[
            "HTTP/1.1 400 Bad Request",
            "Content-Length: 99",
            "Transfer-Encoding: gzip, chunked",
        ]);
        assert_eq!(chunked, BodyFraming::Chunked);
        let body = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
        for cut in 0..body.len() - 4 {
            assert!(!chunked.is_complete(&body[..cut]), "cut {cut}");
            assert!(
                b"hello, world".starts_with(&chunked.body(&body[..cut])),
                "cut {cut}"
            );
        }
        assert!(chunked.is_complete(body));
        assert_eq!(chunked.body(body), b"hello, world");
        assert_eq!(chunked.body(b"ffffffffffffffff\r\nab"), b"ab");
        assert!(!BodyFraming::UntilClose.is_complete(b"anything"));
    }

    #[test]
    fn a_refusal_body_is_shown_on_one_line() {
        let refused = |body: &[u8]| HandshakeError::BadStatus {
            code: 400,
            reason: "Bad Request".into(),
            body: body.to_vec(),
        };
        let prefix = "Bad HTTP response code; expected '101 - Switching Protocols' but got '400 - Bad Request'";
        assert_eq!(refused(b"").to_string(), prefix);
        assert_eq!(refused(b"\r\n").to_string(), prefix);
        assert_eq!(
            refused(b"line 1\r\nline\t2\xff\x1b\n").to_string(),
            format!("{prefix}: line 1\\r\\nline\\t2\u{fffd}\\u{{1b}}")
        );
        let long = vec![b'y'; MAX_ERROR_BODY];
        assert!(refused(&long).to_string().ends_with("yy…"));
        assert_eq!(refused(b"x").status().as_u16(), 400);
        assert_eq!(refused(b"x").response_body(), Some(&b"x"[..]));
        assert_eq!(HandshakeError::BadAccept.response_body(), None);
    }

    fn response(lines: &[&str]) -> http::Response<()> {
        let head = format!("{}\r\n\r\n", lines.join("\r\n"));
        parse_response(head.as_bytes()).unwrap().unwrap().0
    }

    const OK_RESPONSE: [&str; 4] = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Accept: 2/qvz8Hucx3K4CxvMRjwgD42aoE=",
    ];

    #[test]
    fn response_validation() {
        assert_eq!(
            validate_response(&response(&OK_RESPONSE), KEY, &[]),
            Ok(None)
        );
        let mut with_protocol = OK_RESPONSE.to_vec();
        with_protocol.push("Sec-WebSocket-Protocol: chat");
        assert_eq!(
            validate_response(&response(&with_protocol), KEY, &["x", "chat"]),
            Ok(Some("chat".into()))
        );
        assert!(matches!(
            validate_response(&response(&with_protocol), KEY, &["x"]),
            Err(HandshakeError::UnexpectedProtocol(_))
        ));
        let mut with_ext = OK_RESPONSE.to_vec();
        with_ext.push("Sec-WebSocket-Extensions: permessage-deflate");
        assert!(matches!(
            validate_response(&response(&with_ext), KEY, &[]),
            Err(HandshakeError::UnexpectedExtensions(_))
        ));
        assert_eq!(
            validate_response(&response(&OK_RESPONSE), "dGhlIHNhbXBsZSBub25jZQ==", &[]),
            Err(HandshakeError::BadAccept)
        );
        let err = validate_response(&response(&["HTTP/1.1 404 Not Found"]), KEY, &[]).unwrap_err();
        assert_eq!(err.to_string(), "Bad HTTP response code; expected '101 - Switching Protocols' but got '404 - Not Found'");
        let err = validate_response(&response(&OK_RESPONSE[..3]), KEY, &[]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("Absent 'Sec-WebSocket-Accept' HTTP header"),
            "{err}"
        );
    }

    #[test]
    fn a_response_split_anywhere_parses_the_same() {
        let head = format!("{}\r\n\r\n", OK_RESPONSE.join("\r\n"));
        for cut in 0..head.len() {
            assert!(parse_response(&head.as_bytes()[..cut]).unwrap().is_none());
        }
        assert_eq!(
            parse_response(head.as_bytes()).unwrap().unwrap().1,
            head.len()
        );
    }
}
