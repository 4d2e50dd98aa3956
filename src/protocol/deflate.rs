//! permessage-deflate (RFC 7692): the extension negotiation of both roles, as pure string
//! logic shared by both targets, and (natively) the per-message compressor and
//! decompressor in `deflate/codec.rs`.
//!
//! A client offers with [`client_offer`] and checks the server's answer with
//! [`accept_response`]; a server picks the first offer it supports with [`negotiate`],
//! declining (rather than refusing the handshake) offers it cannot honour or that are
//! invalid. Either way the outcome is a [`DeflateParams`], which
//! [`Connection::set_deflate`](super::Connection::set_deflate) turns on.

use super::handshake::HandshakeError;
use crate::DeflateConfig;

#[cfg(not(target_arch = "wasm32"))]
#[path = "deflate/codec.rs"]
pub(crate) mod codec;
#[cfg(target_arch = "wasm32")]
#[path = "deflate/codec_none.rs"]
pub(crate) mod codec;

/// The extension token of RFC 7692.
pub const EXTENSION: &str = "permessage-deflate";

/// The compressor window bits our compressor backend can honour: zlib (and zlib-rs)
/// cannot build a raw deflate stream with an 8-bit window (madler/zlib#171).
const MIN_COMPRESS_WINDOW_BITS: u8 = 9;

/// What both ends agreed on for one connection.
///
/// ```
/// use unisock::protocol::deflate::{negotiate, DeflateParams};
/// let (params, answer) = negotiate(&["permessage-deflate; client_max_window_bits"], &Default::default()).unwrap();
/// assert_eq!(answer, "permessage-deflate");
/// assert_eq!(params, DeflateParams::default());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compressor after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message.
    pub client_no_context_takeover: bool,
    /// The server's LZ77 window, 8 to 15 bits.
    pub server_max_window_bits: u8,
    /// The client's LZ77 window, 8 to 15 bits.
    pub client_max_window_bits: u8,
}

impl Default for DeflateParams {
    fn default() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

/// The client's `Sec-WebSocket-Extensions` offer for `config`.
///
/// It always carries a value-less `client_max_window_bits` (the server may then pick our
/// window), or `client_max_window_bits=N` when the config limits it.
///
/// ```
/// use unisock::{protocol::deflate::client_offer, DeflateConfig};
/// assert_eq!(client_offer(&DeflateConfig::default()), "permessage-deflate; client_max_window_bits");
/// let small = DeflateConfig::default().server_max_window_bits(10).client_no_context_takeover(true);
/// assert_eq!(
///     client_offer(&small),
///     "permessage-deflate; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits"
/// );
/// ```
pub fn client_offer(config: &DeflateConfig) -> String {
    let mut out = String::from(EXTENSION);
    if config.server_no_context_takeover {
        out.push_str("; server_no_context_takeover");
    }
    if config.client_no_context_takeover {
        out.push_str("; client_no_context_takeover");
    }
    if config.server_max_window_bits < 15 {
        out.push_str(&format!(
            "; server_max_window_bits={}",
            config.server_max_window_bits
        ));
    }
    out.push_str("; client_max_window_bits");
    if config.client_max_window_bits < 15 {
        out.push_str(&format!("={}", config.client_max_window_bits));
    }
    out
}

/// Server side: picks the first `permessage-deflate` offer in the request's
/// `Sec-WebSocket-Extensions` values that is valid and that we support, and returns the
/// agreement and the response header value. `None` declines compression (no valid offer,
/// or `config` disabled): the handshake goes on without it.
///
/// Offers with unknown, duplicate or invalid parameters are declined (RFC 7692 §5), as is
/// an offer that limits our compressor to an 8-bit window, which zlib cannot produce.
///
/// ```
/// use unisock::protocol::deflate::negotiate;
/// let config = unisock::DeflateConfig::default();
/// let offers = ["permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=10; client_no_context_takeover"];
/// let (params, answer) = negotiate(&offers, &config).unwrap();
/// assert_eq!(answer, "permessage-deflate; client_no_context_takeover; server_max_window_bits=10");
/// assert_eq!((params.server_max_window_bits, params.client_no_context_takeover), (10, true));
/// assert!(negotiate(&["permessage-deflate; foo=1"], &config).is_none());
/// ```
pub fn negotiate(offers: &[&str], config: &DeflateConfig) -> Option<(DeflateParams, String)> {
    if !config.enabled {
        return None;
    }
    offers
        .iter()
        .filter_map(|value| parse_list(value).ok())
        .flatten()
        .filter(|el| el.name.eq_ignore_ascii_case(EXTENSION))
        .filter_map(|el| parse_params(&el.params, true).ok())
        .find_map(|offer| accept_offer(&offer, config))
}

/// Answers one valid offer, or declines it (`None`).
fn accept_offer(offer: &RawParams, config: &DeflateConfig) -> Option<(DeflateParams, String)> {
    let mut params = DeflateParams {
        server_no_context_takeover: offer.server_no_context_takeover
            || config.server_no_context_takeover,
        client_no_context_takeover: offer.client_no_context_takeover
            || config.client_no_context_takeover,
        ..DeflateParams::default()
    };
    let ours = config
        .server_max_window_bits
        .clamp(MIN_COMPRESS_WINDOW_BITS, 15);
    let mut answer_server_bits = ours < 15;
    params.server_max_window_bits = match offer.server_max_window_bits {
        Some(bits) if bits < MIN_COMPRESS_WINDOW_BITS => return None,
        Some(bits) => {
            answer_server_bits = true;
            ours.min(bits)
        }
        None => ours,
    };
    let wanted = config.client_max_window_bits.clamp(8, 15);
    let mut answer_client_bits = false;
    params.client_max_window_bits = match offer.client_max_window_bits {
        // The client cannot limit its window: it may use 32 KiB.
        None => 15,
        Some(None) => {
            answer_client_bits = wanted < 15;
            wanted
        }
        Some(Some(bits)) if wanted < bits => {
            answer_client_bits = true;
            wanted
        }
        Some(Some(bits)) => bits,
    };
    let mut answer = String::from(EXTENSION);
    if params.server_no_context_takeover {
        answer.push_str("; server_no_context_takeover");
    }
    if params.client_no_context_takeover {
        answer.push_str("; client_no_context_takeover");
    }
    if answer_server_bits {
        answer.push_str(&format!(
            "; server_max_window_bits={}",
            params.server_max_window_bits
        ));
    }
    if answer_client_bits {
        answer.push_str(&format!(
            "; client_max_window_bits={}",
            params.client_max_window_bits
        ));
    }
    Some((params, answer))
}

/// Client side: checks the server's `Sec-WebSocket-Extensions` answer to
/// [`client_offer`]`(config)` and returns the agreement.
///
/// # Errors
/// [`HandshakeError::InvalidExtensions`] when the answer is not one `permessage-deflate`
/// with valid, non-duplicate response parameters within what we offered (RFC 7692 §5:
/// the client fails the connection).
///
/// ```
/// use unisock::protocol::deflate::accept_response;
/// let config = unisock::DeflateConfig::default();
/// let params = accept_response("permessage-deflate; client_max_window_bits=10", &config).unwrap();
/// assert_eq!(params.client_max_window_bits, 10);
/// assert!(accept_response("permessage-deflate; client_max_window_bits", &config).is_err());
/// assert!(accept_response("x-webkit-deflate-frame", &config).is_err());
/// ```
pub fn accept_response(
    answer: &str,
    config: &DeflateConfig,
) -> Result<DeflateParams, HandshakeError> {
    let invalid = |why: &str| HandshakeError::InvalidExtensions {
        header: answer.to_string(),
        why: why.to_string(),
    };
    let elements = parse_list(answer).map_err(invalid)?;
    let [element] = elements.as_slice() else {
        return Err(invalid("expected exactly one extension"));
    };
    if !element.name.eq_ignore_ascii_case(EXTENSION) || !config.enabled {
        return Err(invalid("the extension was not offered"));
    }
    let raw = parse_params(&element.params, false).map_err(invalid)?;
    let server_bits = raw.server_max_window_bits.unwrap_or(15);
    if config.server_max_window_bits < 15 && server_bits > config.server_max_window_bits {
        return Err(invalid("server_max_window_bits is larger than offered"));
    }
    let offered_client_bits = config.client_max_window_bits.clamp(8, 15);
    let client_bits = match raw.client_max_window_bits {
        Some(Some(bits)) if bits > offered_client_bits => {
            return Err(invalid("client_max_window_bits is larger than offered"))
        }
        Some(Some(bits)) => bits,
        _ => offered_client_bits,
    };
    Ok(DeflateParams {
        server_no_context_takeover: raw.server_no_context_takeover
            || config.server_no_context_takeover,
        client_no_context_takeover: raw.client_no_context_takeover
            || config.client_no_context_takeover,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
    })
}

/// One element of an extension list: its name and its parameters (values unquoted).
#[derive(Debug, PartialEq, Eq)]
struct Element<'a> {
    name: &'a str,
    params: Vec<(&'a str, Option<String>)>,
}

/// The parameters of one `permessage-deflate` element. `client_max_window_bits` is
/// `Some(None)` when present without a value (offers only).
#[derive(Debug, Default, PartialEq, Eq)]
struct RawParams {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    client_max_window_bits: Option<Option<u8>>,
}

/// Checks the parameters of an offer (`offer`) or a response against RFC 7692 §7.
fn parse_params(params: &[(&str, Option<String>)], offer: bool) -> Result<RawParams, &'static str> {
    let mut raw = RawParams::default();
    let mut seen = [false; 4];
    for (name, value) in params {
        let (slot, index) = match *name {
            "server_no_context_takeover" => (None, 0),
            "client_no_context_takeover" => (None, 1),
            "server_max_window_bits" => (Some(false), 2),
            "client_max_window_bits" => (Some(true), 3),
            _ => return Err("unknown parameter"),
        };
        if std::mem::replace(&mut seen[index], true) {
            return Err("duplicate parameter");
        }
        match (slot, value.as_deref()) {
            (None, Some(_)) => return Err("no_context_takeover takes no value"),
            (None, None) if index == 0 => raw.server_no_context_takeover = true,
            (None, None) => raw.client_no_context_takeover = true,
            (Some(false), Some(v)) => raw.server_max_window_bits = Some(window_bits(v)?),
            (Some(false), None) => return Err("server_max_window_bits needs a value"),
            (Some(true), Some(v)) => raw.client_max_window_bits = Some(Some(window_bits(v)?)),
            (Some(true), None) if offer => raw.client_max_window_bits = Some(None),
            (Some(true), None) => return Err("client_max_window_bits needs a value in a response"),
        }
    }
    Ok(raw)
}

/// A window size value: `8` to `15`, decimal without leading zeros.
fn window_bits(value: &str) -> Result<u8, &'static str> {
    match value {
        "8" | "9" | "10" | "11" | "12" | "13" | "14" | "15" => {
            value.parse().map_err(|_| "invalid window bits")
        }
        _ => Err("window bits must be 8 to 15"),
    }
}

/// Parses a `Sec-WebSocket-Extensions` value (RFC 6455 §9.1): a comma-separated list of
/// `name *( ";" param [ "=" ( token / quoted-string ) ] )`; empty list elements are skipped.
fn parse_list(value: &str) -> Result<Vec<Element<'_>>, &'static str> {
    let mut cur = Cursor { s: value, pos: 0 };
    let mut out = Vec::new();
    loop {
        cur.skip_ws();
        match cur.peek() {
            None => break,
            Some(b',') => {
                cur.pos += 1;
                continue;
            }
            Some(_) => {}
        }
        let name = cur.token().ok_or("expected an extension name")?;
        let mut params = Vec::new();
        loop {
            cur.skip_ws();
            match cur.peek() {
                None => break,
                Some(b',') => {
                    cur.pos += 1;
                    break;
                }
                Some(b';') => {
                    cur.pos += 1;
                    cur.skip_ws();
                    let param = cur.token().ok_or("expected a parameter name")?;
                    cur.skip_ws();
                    let value = if cur.peek() == Some(b'=') {
                        cur.pos += 1;
                        cur.skip_ws();
                        if cur.peek() == Some(b'"') {
                            Some(cur.quoted()?)
                        } else {
                            Some(cur.token().ok_or("expected a parameter value")?.to_string())
                        }
                    } else {
                        None
                    };
                    params.push((param, value));
                }
                Some(_) => return Err("unexpected character"),
            }
        }
        out.push(Element { name, params });
    }
    Ok(out)
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// An RFC 7230 token, if one starts here.
    fn token(&mut self) -> Option<&'a str> {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        self.s.get(start..self.pos).filter(|t| !t.is_empty())
    }

    /// A quoted-string starting here, unescaped; its content must itself be a token
    /// (RFC 6455 §9.1).
    fn quoted(&mut self) -> Result<String, &'static str> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err("unterminated quoted string"),
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = self.peek().ok_or("unterminated quoted string")?;
                    out.push(char::from(c));
                    self.pos += 1;
                }
                Some(c) => {
                    out.push(char::from(c));
                    self.pos += 1;
                }
            }
        }
        if out.is_empty() || !out.bytes().all(is_tchar) {
            return Err("a quoted value must be a token");
        }
        Ok(out)
    }
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(value: &str) -> Option<(DeflateParams, String)> {
        negotiate(&[value], &DeflateConfig::default())
    }

    #[test]
    fn parses_lists_quotes_and_whitespace() {
        let list = parse_list(" foo , permessage-deflate ;client_max_window_bits; server_max_window_bits=\"10\",, bar; x=y").unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(list[0].name, "foo");
        assert_eq!(
            list[1].params,
            [
                ("client_max_window_bits", None),
                ("server_max_window_bits", Some("10".to_string()))
            ]
        );
        assert_eq!(list[2].params, [("x", Some("y".to_string()))]);
        for bad in [
            "permessage-deflate; =1",
            "a b",
            "a; b=\"unterminated",
            "a; b=\"1 0\"",
            "a;",
            "a; b=",
        ] {
            assert!(parse_list(bad).is_err(), "{bad}");
        }
    }

    // RFC 7692 §7.1.3 example: a client offers permessage-deflate with no parameters.
    #[test]
    fn bare_offer_is_accepted_with_defaults() {
        let (params, answer) = offer("permessage-deflate").unwrap();
        assert_eq!(answer, "permessage-deflate");
        assert_eq!(params, DeflateParams::default());
    }

    // RFC 7692 §7.1.3 examples of offers, one line each, with the answer we give.
    #[test]
    fn rfc_examples() {
        let cases = [
            (
                "permessage-deflate; client_max_window_bits",
                "permessage-deflate",
            ),
            (
                "permessage-deflate; server_max_window_bits=10",
                "permessage-deflate; server_max_window_bits=10",
            ),
            (
                // The first offer is declined (8 bits), the second accepted.
                "permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=10",
                "permessage-deflate; server_max_window_bits=10",
            ),
            (
                "permessage-deflate; client_max_window_bits; server_max_window_bits=10, permessage-deflate; client_max_window_bits",
                "permessage-deflate; server_max_window_bits=10",
            ),
            (
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            ),
            (
                "permessage-deflate; client_max_window_bits=\"12\"",
                "permessage-deflate",
            ),
        ];
        for (offered, answer) in cases {
            assert_eq!(
                offer(offered).map(|o| o.1).as_deref(),
                Some(answer),
                "{offered}"
            );
        }
        let (params, _) = offer("permessage-deflate; client_max_window_bits=12").unwrap();
        assert_eq!(params.client_max_window_bits, 12);
    }

    #[test]
    fn invalid_offers_are_declined() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=0x9",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            "permessage-deflate; mystery",
            "x-webkit-deflate-frame",
            "permessage-deflate; server_max_window_bits=8",
            "",
        ] {
            assert_eq!(offer(bad), None, "{bad}");
        }
        // A valid offer after an invalid one is still taken.
        assert!(offer("permessage-deflate; foo, permessage-deflate").is_some());
        // Disabled: nothing is accepted.
        assert!(negotiate(&["permessage-deflate"], &DeflateConfig::disabled()).is_none());
    }

    #[test]
    fn server_limits_and_requests_from_its_config() {
        let config = DeflateConfig::default()
            .server_max_window_bits(11)
            .client_max_window_bits(10)
            .server_no_context_takeover(true)
            .client_no_context_takeover(true);
        let (params, answer) = negotiate(
            &["permessage-deflate; client_max_window_bits; server_max_window_bits=13"],
            &config,
        )
        .unwrap();
        assert_eq!(answer, "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=11; client_max_window_bits=10");
        assert_eq!(
            params,
            DeflateParams {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                server_max_window_bits: 11,
                client_max_window_bits: 10,
            }
        );
        // Without client_max_window_bits in the offer the server cannot limit the client.
        let (params, answer) = negotiate(&["permessage-deflate"], &config).unwrap();
        assert!(!answer.contains("client_max_window_bits"));
        assert_eq!(params.client_max_window_bits, 15);
        // An offered client window below ours is kept (our inflater uses at least 9 bits).
        let (params, answer) =
            negotiate(&["permessage-deflate; client_max_window_bits=8"], &config).unwrap();
        assert!(!answer.contains("client_max_window_bits"));
        assert_eq!(params.client_max_window_bits, 8);
    }

    #[test]
    fn client_checks_the_answer() {
        let config = DeflateConfig::default();
        let ok = |a: &str| accept_response(a, &config);
        assert_eq!(ok("permessage-deflate").unwrap(), DeflateParams::default());
        let p = ok("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=8").unwrap();
        assert_eq!(
            p,
            DeflateParams {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                server_max_window_bits: 9,
                client_max_window_bits: 8,
            }
        );
        for bad in [
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; unknown",
            "permessage-deflate, permessage-deflate",
            "foo",
            "",
        ] {
            assert!(ok(bad).is_err(), "{bad}");
        }
        // Nothing larger than we offered.
        let small = DeflateConfig::default()
            .server_max_window_bits(10)
            .client_max_window_bits(9);
        assert!(accept_response("permessage-deflate; server_max_window_bits=11", &small).is_err());
        assert!(accept_response("permessage-deflate; client_max_window_bits=10", &small).is_err());
        let p = accept_response("permessage-deflate; server_max_window_bits=10", &small).unwrap();
        assert_eq!(
            (p.server_max_window_bits, p.client_max_window_bits),
            (10, 9)
        );
        assert!(accept_response("permessage-deflate", &DeflateConfig::disabled()).is_err());
    }

    #[test]
    fn offers_round_trip_through_our_own_server() {
        for config in [
            DeflateConfig::default(),
            DeflateConfig::default()
                .server_max_window_bits(9)
                .client_max_window_bits(9),
            DeflateConfig::default()
                .server_no_context_takeover(true)
                .client_no_context_takeover(true),
        ] {
            let (server_params, answer) = negotiate(&[&client_offer(&config)], &config).unwrap();
            let client_params = accept_response(&answer, &config).unwrap();
            assert_eq!(server_params, client_params, "{config:?}");
        }
    }
}
