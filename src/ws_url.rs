//! Client URL checks, with the same errors on both targets. Natively the `url` crate
//! parses; in the browser the browser's own `URL` does, which keeps the `url` crate and its
//! Unicode tables (most of a page's wasm) out of the browser build. Both implement the
//! WHATWG URL Standard, so a URL that parses gives the same normalised string either way.
//!
//! The browser's parser says only "Invalid URL": why is found by [`classify`], which looks
//! at the URL as the URL Standard splits it and asks the parser about the host alone. A
//! native test checks it against the `url` crate's own errors.
//!
//! Where the two parsers differ, the browser's wins in the browser: it is the parser its
//! `WebSocket` uses. The differences are at the edges of IDNA (which Unicode version maps
//! a host) and where a browser departs from the URL Standard; an ASCII
//! `ws://host:port/path?query` URL parses the same in both. One departure is undone here:
//! Chromium takes a space (and other characters the Standard forbids) in a host, escaping
//! it as `%20`; such a host is refused as natively ("the host contains ' '").

use crate::{Error, Result};

/// A parsed client URL: natively the `url` crate's, in the browser the normalised string
/// (the browser's `URL.href`), which is all `web_sys::WebSocket::new` needs.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) type WsUrl = url::Url;
/// A parsed client URL: natively the `url` crate's, in the browser the normalised string
/// (the browser's `URL.href`), which is all `web_sys::WebSocket::new` needs.
#[cfg(target_arch = "wasm32")]
pub(crate) type WsUrl = String;

/// Why a URL did not parse, as the URL Standard's parser fails.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    /// Nothing but white space.
    Empty,
    /// No scheme.
    Relative,
    EmptyHost,
    /// Not a number, or over 65535.
    Port,
    Ipv4,
    Ipv6,
    /// A domain that IDNA refuses, or with a character a host may not hold.
    Domain,
    /// Anything else, in the parser's words.
    Other(String),
}

/// Parses a client URL (both targets): `ws` or `wss`, with a host, without a fragment
/// (RFC 6455 §3; a browser throws a `SyntaxError` for one). The error says which rule the
/// URL breaks, in the user's terms rather than the URL parser's.
pub(crate) fn parse_ws_url(url: &str) -> Result<WsUrl> {
    let invalid = |reason: String| Error::InvalidUrl {
        url: url.into(),
        reason: reason.into(),
    };
    let parsed = parse(url).map_err(|f| invalid(reason(url, f)))?;
    let (scheme, host, fragment) = parts(&parsed);
    if !matches!(scheme, "ws" | "wss") {
        return Err(invalid(format!(
            "'{scheme}' is not a WebSocket scheme: use ws:// or wss://"
        )));
    }
    if host.is_empty() {
        return Err(invalid("the host is empty".into()));
    }
    if let Some(fragment) = fragment {
        return Err(invalid(format!(
            "a WebSocket URL may not have a fragment ('#{fragment}')"
        )));
    }
    Ok(parsed)
}

#[cfg(not(target_arch = "wasm32"))]
fn parse(url: &str) -> Result<WsUrl, Failure> {
    use url::ParseError as P;
    url::Url::parse(url).map_err(|e| match e {
        P::RelativeUrlWithoutBase if url.trim().is_empty() => Failure::Empty,
        P::RelativeUrlWithoutBase => Failure::Relative,
        P::EmptyHost => Failure::EmptyHost,
        P::InvalidPort => Failure::Port,
        P::InvalidIpv4Address => Failure::Ipv4,
        P::InvalidIpv6Address => Failure::Ipv6,
        P::IdnaError | P::InvalidDomainCharacter => Failure::Domain,
        other => Failure::Other(other.to_string()),
    })
}

/// The scheme, the host and the fragment (`None` without a `#`).
#[cfg(not(target_arch = "wasm32"))]
fn parts(url: &WsUrl) -> (&str, &str, Option<&str>) {
    (url.scheme(), url.host_str().unwrap_or(""), url.fragment())
}

#[cfg(target_arch = "wasm32")]
fn parse(url: &str) -> Result<WsUrl, Failure> {
    // Chromium lets a space through in a host (as `%20`); the URL Standard and the `url`
    // crate refuse it, and so does this, as natively.
    let host_parses = |host: &str| {
        !forbidden_in_domain(host) && web_sys::Url::new(&format!("ws://{host}/")).is_ok()
    };
    let host_ok = || written_host(url).is_none_or(|host| host_parses(&host));
    match web_sys::Url::new(url) {
        Ok(parsed) if host_ok() => Ok(parsed.href()),
        _ => Err(classify(url, host_parses)),
    }
}

/// The scheme, the host and the fragment (`None` without a `#`), read off the normalised
/// URL: the serialiser writes a `#` only before the fragment, and the host between `//`
/// and the next `/`, `?`, `#` or port (`URL.hash` cannot tell no fragment from `#`).
#[cfg(target_arch = "wasm32")]
fn parts(href: &str) -> (&str, &str, Option<&str>) {
    let (scheme, rest) = href.split_once(':').unwrap_or((href, ""));
    let (host, _) = split_host_port(authority(rest, is_special(scheme)).unwrap_or(""));
    let fragment = href.split_once('#').map(|(_, f)| f);
    (scheme, host, fragment)
}

/// Why a URL that does not parse fails, as the URL Standard's parser (and the `url` crate)
/// would say: from the URL as written, and `host_parses`, which parses a host alone.
#[cfg_attr(
    not(any(test, target_arch = "wasm32")),
    allow(dead_code, reason = "used by the browser build and tested natively")
)]
fn classify(url: &str, host_parses: impl Fn(&str) -> bool) -> Failure {
    let url = cleaned(url);
    if url.trim().is_empty() {
        return Failure::Empty;
    }
    let Some((scheme, rest)) = split_scheme(&url) else {
        return Failure::Relative;
    };
    let Some(authority) = authority(rest, is_special(scheme)) else {
        return Failure::Other("it is not a valid URL".into());
    };
    let (host, port) = split_host_port(authority);
    if host.is_empty() {
        return Failure::EmptyHost;
    }
    // The host is parsed before the port.
    if !host_parses(host) {
        return if host.starts_with('[') {
            Failure::Ipv6
        } else if forbidden_host_char(host).is_none() && ends_in_a_number(host) {
            Failure::Ipv4
        } else {
            Failure::Domain
        };
    }
    match port {
        Some(p) if !port_is_valid(p) => Failure::Port,
        _ => Failure::Other("it is not a valid URL".into()),
    }
}

/// Digits for a number up to 65535, or nothing (the scheme's default port).
fn port_is_valid(port: &str) -> bool {
    port.is_empty() || (port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok())
}

/// The URL as the parser reads it: without leading and trailing C0 controls and spaces, nor
/// tabs and newlines anywhere.
#[cfg_attr(
    not(any(test, target_arch = "wasm32")),
    allow(dead_code, reason = "used by the browser build and tested natively")
)]
fn cleaned(url: &str) -> String {
    url.trim_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect()
}

/// The host as written in a URL that has an authority.
#[cfg(target_arch = "wasm32")]
fn written_host(url: &str) -> Option<String> {
    let url = cleaned(url);
    let (scheme, rest) = split_scheme(&url)?;
    let (host, _) = split_host_port(authority(rest, is_special(scheme))?);
    Some(host.to_string())
}

/// Whether a host that is not an IPv6 address (in brackets) holds, once percent-decoded,
/// one of the URL Standard's forbidden domain code points.
#[cfg_attr(
    not(any(test, target_arch = "wasm32")),
    allow(dead_code, reason = "used by the browser build and tested natively")
)]
fn forbidden_in_domain(host: &str) -> bool {
    if host.starts_with('[') {
        return false;
    }
    let bytes = host.as_bytes();
    let hex = |i: usize| {
        bytes
            .get(i)
            .and_then(|b| char::from(*b).to_digit(16))
            .map(|d| d as u8)
    };
    let mut i = 0;
    while i < bytes.len() {
        let mut b = bytes[i];
        if let (b'%', Some(hi), Some(lo)) = (b, hex(i + 1), hex(i + 2)) {
            b = hi << 4 | lo;
            i += 2;
        }
        if b <= b' ' || b == 0x7f || b"#%/:<>?@[\\]^|".contains(&b) {
            return true;
        }
        i += 1;
    }
    false
}

/// The error message for a failure: the parser's kind of error, made precise with the part
/// of the input it is about (neither parser says which port or which character).
fn reason(url: &str, failure: Failure) -> String {
    let url = url.trim();
    let (host, port) = split_scheme(url)
        .and_then(|(scheme, rest)| authority(rest, is_special(scheme)))
        .map_or(("", None), split_host_port);
    match failure {
        Failure::Empty => "it is empty".into(),
        Failure::Relative => "it is relative: use an absolute ws:// or wss:// URL".into(),
        Failure::EmptyHost => "the host is empty".into(),
        Failure::Port => match port {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                format!("port {p} is out of range (at most 65535)")
            }
            Some(p) => format!("the port '{p}' is not a number"),
            None => "the port is not a number".into(),
        },
        Failure::Ipv4 => "the host is not a valid IPv4 address".into(),
        Failure::Ipv6 => "the host is not a valid IPv6 address".into(),
        Failure::Domain => match forbidden_host_char(host) {
            Some(c) => format!("the host contains {c:?}, which is not allowed"),
            None => format!("the host '{host}' is not a valid domain name"),
        },
        Failure::Other(why) => why,
    }
}

/// The scheme (a letter, then letters, digits, `+`, `-`, `.`) and what follows its `:`.
fn split_scheme(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    valid.then_some((scheme, rest))
}

/// The URL Standard's special schemes, whose URLs always have a host.
fn is_special(scheme: &str) -> bool {
    ["ws", "wss", "http", "https", "ftp", "file"]
        .iter()
        .any(|s| s.eq_ignore_ascii_case(scheme))
}

/// The host and port of what follows the scheme's `:` (after any user info), as written;
/// `None` where there is no authority. A special URL's may follow any number of `/` or
/// `\`, and end at either.
fn authority(rest: &str, special: bool) -> Option<&str> {
    let (rest, ends): (&str, &[char]) = if special {
        (rest.trim_start_matches(['/', '\\']), &['/', '\\', '?', '#'])
    } else {
        (rest.strip_prefix("//")?, &['/', '?', '#'])
    };
    let authority = rest.split(ends).next().unwrap_or("");
    Some(
        authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host),
    )
}

/// Splits `host:port` at the first `:` outside an IPv6 address's brackets.
fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    let mut in_brackets = false;
    for (i, c) in authority.char_indices() {
        match c {
            '[' => in_brackets = true,
            ']' => in_brackets = false,
            ':' if !in_brackets => return (&authority[..i], Some(&authority[i + 1..])),
            _ => {}
        }
    }
    (authority, None)
}

/// The first ASCII character a host may not hold (the URL Standard's forbidden domain
/// code points, more or less: what is neither unreserved nor a sub-delimiter).
fn forbidden_host_char(host: &str) -> Option<char> {
    host.chars()
        .find(|&c| c.is_ascii() && !(c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=".contains(c)))
}

/// The URL Standard's "ends in a number": such a host must be an IPv4 address.
fn ends_in_a_number(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    let last = host.rsplit('.').next().unwrap_or("");
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    last.strip_prefix("0x")
        .or_else(|| last.strip_prefix("0X"))
        .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason_of(url: &str) -> String {
        match parse_ws_url(url) {
            Err(Error::InvalidUrl { url: given, reason }) => {
                assert_eq!(&*given, url);
                reason.into()
            }
            other => panic!("{url}: {other:?}"),
        }
    }

    /// Every rule, with its message (the browser tests check the same cases).
    const CASES: &[(&str, &str)] = &include!("ws_url_cases.rs");

    #[test]
    fn url_errors_give_the_real_reason() {
        for (url, why) in CASES {
            assert_eq!(reason_of(url), *why, "{url}");
        }
    }

    #[test]
    fn good_urls_parse_and_are_normalised() {
        for (url, normalised) in [
            ("ws://x", "ws://x/"),
            ("wss://x:1/a?b=c", "wss://x:1/a?b=c"),
            ("ws://[::1]:9001/", "ws://[::1]:9001/"),
            ("WS://X:80/", "ws://x/"),
            ("wss://h:443", "wss://h/"),
            ("ws://0x7f.1/", "ws://127.0.0.1/"),
        ] {
            assert_eq!(parse_ws_url(url).unwrap().as_str(), normalised, "{url}");
        }
    }

    /// The browser's classification, with the `url` crate parsing hosts, agrees with the
    /// `url` crate's own errors: the browser gives the same reasons as the native build.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn the_browsers_classification_matches_the_url_crates_errors() {
        let host_parses = |host: &str| {
            !forbidden_in_domain(host) && url::Url::parse(&format!("ws://{host}/")).is_ok()
        };
        let more = [
            "ws://a%20b/",
            "ws://1.2.3.4.5/",
            "ws://0x100000000/",
            "ws://xn--a.com/",
            "ws://x:65536",
            "ws://x:+1/",
            "ws://x:000000000000000000080/",
            "ws://x:00000000000000000065536/",
            "ws://[1:2:3]/",
            "wss://[::1]x/",
            "ws:\\\\h:9x/",
            "foo://a b/",
            "foo://x:y/",
            "1ws://x/",
            "\t ws://:1",
        ];
        let urls = CASES.iter().map(|(url, _)| *url).chain(more);
        for url in urls {
            let Err(native) = parse(url) else { continue };
            assert_eq!(classify(url, host_parses), native, "{url:?}");
        }
    }
}
