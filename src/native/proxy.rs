//! Clients through proxies: HTTP CONNECT (Basic auth) and SOCKS5 (username and password),
//! chosen explicitly or from the environment as curl does.

use base64::Engine;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::BoxIo;
use crate::{Error, ProxyError, Result};

/// Which proxy a client's connections go through ([`crate::WebSocketExt::set_proxy`]).
///
/// A proxy URL is `http://[user:password@]host[:port]` (HTTP CONNECT, with Basic auth when
/// it has credentials), `socks5h://...` (SOCKS5, the proxy resolves the target's name) or
/// `socks5://...` (SOCKS5, resolved here), credentials percent-encoded; without a port,
/// 1080; without a scheme, `http://`, as curl reads them. `ws://` and `wss://` both go
/// through a tunnel to the target; for `wss://`, TLS runs inside it, with the target's name.
///
/// ```
/// use unisock::{Proxy, WebSocket, WebSocketExt};
/// let ws = WebSocket::new();
/// ws.set_proxy(Proxy::Url("socks5h://user:pass@127.0.0.1:1080".into())).unwrap();
/// ws.set_proxy(Proxy::None).unwrap(); // direct, whatever the environment says
/// assert_eq!(Proxy::default(), Proxy::FromEnv);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Proxy {
    /// From the environment at each connection (and each redirect's), as curl reads it:
    /// for `wss://` `wss_proxy`, then `https_proxy`; for `ws://` `ws_proxy`, then
    /// `http_proxy`; then `all_proxy`; each lower case first, then upper case (but
    /// `HTTP_PROXY` not in a CGI program, where `REQUEST_METHOD` is set: a request's
    /// `Proxy:` header sets it there). Empty means unset. None set: direct.
    ///
    /// `no_proxy` (or `NO_PROXY`) lists the hosts to reach directly, separated by commas:
    /// a name covers itself and its subdomains (`example.com` and `.example.com` both
    /// cover `ws.example.com`), an IP address or CIDR block (`10.0.0.0/8`) the addresses
    /// in it, and `*` alone every host. Case and a trailing dot do not matter; ports are
    /// not compared. As in curl and Python, `localhost` and `127.0.0.1` go through the
    /// proxy unless listed.
    #[default]
    FromEnv,
    /// Direct connections, whatever the environment says.
    None,
    /// This proxy for every connection, whatever the environment (`no_proxy` included)
    /// says.
    Url(String),
}

/// The proxy setting a socket keeps: [`Proxy`], its URL checked and parsed.
#[derive(Clone, Debug, Default)]
pub(super) enum Choice {
    #[default]
    FromEnv,
    Direct,
    Via(Box<ProxyAddr>),
}

impl Choice {
    /// Checks `proxy`'s URL.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] for a URL that is not a proxy's.
    pub(super) fn new(proxy: Proxy) -> Result<Choice> {
        Ok(match proxy {
            Proxy::FromEnv => Choice::FromEnv,
            Proxy::None => Choice::Direct,
            Proxy::Url(url) => Choice::Via(Box::new(ProxyAddr::parse(&url, None)?)),
        })
    }

    /// The proxy for a connection to `url`, if any.
    pub(super) fn for_url(&self, url: &url::Url) -> Result<Option<ProxyAddr>> {
        match self {
            Choice::Direct => Ok(None),
            Choice::Via(proxy) => Ok(Some((**proxy).clone())),
            Choice::FromEnv => {
                let host = url.host_str().unwrap_or_default();
                match from_env(url.scheme() == "wss", host, |name| std::env::var(name).ok()) {
                    Some((name, value)) => ProxyAddr::parse(&value, Some(name)).map(Some),
                    None => Ok(None),
                }
            }
        }
    }
}

/// The proxy variable (its name and value) for a connection to `host` (`secure`: over
/// TLS), by the rules of [`Proxy::FromEnv`]; `var` reads a variable.
fn from_env(
    secure: bool,
    host: &str,
    var: impl Fn(&str) -> Option<String>,
) -> Option<(&'static str, String)> {
    let var = |name: &str| var(name).filter(|value| !value.is_empty());
    if let Some(list) = var("no_proxy").or_else(|| var("NO_PROXY")) {
        if exempt(host, &list) {
            return None;
        }
    }
    let cgi = var("REQUEST_METHOD").is_some();
    let names: &[&'static str] = if secure {
        &["wss_proxy", "WSS_PROXY", "https_proxy", "HTTPS_PROXY"]
    } else {
        &["ws_proxy", "WS_PROXY", "http_proxy", "HTTP_PROXY"]
    };
    names
        .iter()
        .chain(&["all_proxy", "ALL_PROXY"])
        .filter(|&&name| !(cgi && name == "HTTP_PROXY"))
        .find_map(|&name| var(name).map(|value| (name, value)))
}

/// Whether `no_proxy` (a comma-separated list) exempts `host` from the proxy, as curl
/// reads it.
fn exempt(host: &str, no_proxy: &str) -> bool {
    let no_proxy = no_proxy.trim();
    if no_proxy == "*" {
        return true;
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = host.parse::<std::net::IpAddr>().ok();
    let name = host.strip_suffix('.').unwrap_or(host);
    no_proxy
        .split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter(|entry| !entry.is_empty())
        .any(|entry| match ip {
            Some(ip) => in_block(ip, entry),
            None => {
                let entry = entry.strip_suffix('.').unwrap_or(entry);
                let entry = entry.strip_prefix('.').unwrap_or(entry);
                name.eq_ignore_ascii_case(entry)
                    || (name.len() > entry.len()
                        && name.as_bytes()[name.len() - entry.len() - 1] == b'.'
                        && name[name.len() - entry.len()..].eq_ignore_ascii_case(entry))
            }
        })
}

/// Whether `ip` is the address `entry` or in its CIDR block (`10.0.0.0/8`).
fn in_block(ip: std::net::IpAddr, entry: &str) -> bool {
    use std::net::IpAddr;
    let (addr, bits) = match entry.split_once('/') {
        Some((addr, bits)) => match bits.parse::<u32>() {
            Ok(bits) => (addr, Some(bits)),
            Err(_) => return false,
        },
        None => (entry, None),
    };
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    match (ip, addr.parse::<IpAddr>()) {
        (IpAddr::V4(ip), Ok(IpAddr::V4(net))) => {
            prefix_matches(&ip.octets(), &net.octets(), bits.unwrap_or(32))
        }
        (IpAddr::V6(ip), Ok(IpAddr::V6(net))) => {
            prefix_matches(&ip.octets(), &net.octets(), bits.unwrap_or(128))
        }
        _ => false,
    }
}

/// Whether the first `bits` bits of `a` and `b` agree (false past their length).
fn prefix_matches(a: &[u8], b: &[u8], bits: u32) -> bool {
    if bits as usize > a.len() * 8 {
        return false;
    }
    let (bytes, rest) = ((bits / 8) as usize, bits % 8);
    a[..bytes] == b[..bytes] && (rest == 0 || (a[bytes] ^ b[bytes]) >> (8 - rest) == 0)
}

/// How a proxy is spoken to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// HTTP CONNECT.
    Http,
    /// SOCKS5; `remote_dns`: the proxy resolves the target's name (`socks5h://`).
    Socks5 { remote_dns: bool },
}

/// A proxy: how to speak to it, where it is, and the credentials to give it.
#[derive(Clone)]
pub(super) struct ProxyAddr {
    kind: Kind,
    host: String,
    port: u16,
    /// Username and password, decoded.
    credentials: Option<(String, String)>,
}

impl std::fmt::Debug for ProxyAddr {
    // Without the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} proxy {}", self.kind, self.authority())
    }
}

impl ProxyAddr {
    /// Parses a proxy URL; `var` is the environment variable it came from, for errors.
    fn parse(given: &str, var: Option<&str>) -> Result<ProxyAddr> {
        let invalid = |reason: String| Error::InvalidUrl {
            url: redacted(given).into(),
            reason: match var {
                Some(var) => format!("the proxy URL in {var}: {reason}").into(),
                None => reason.into(),
            },
        };
        // curl reads "host:port" as an HTTP proxy.
        let with_scheme;
        let text = if given.contains("://") {
            given
        } else {
            with_scheme = format!("http://{given}");
            &with_scheme
        };
        let url = url::Url::parse(text).map_err(|e| invalid(e.to_string()))?;
        let kind = match url.scheme() {
            "http" => Kind::Http,
            "socks5" => Kind::Socks5 { remote_dns: false },
            "socks5h" => Kind::Socks5 { remote_dns: true },
            "https" => {
                return Err(invalid(
                    "https:// proxies (TLS to the proxy) are not supported: use http://".into(),
                ))
            }
            other => {
                return Err(invalid(format!(
                    "the scheme '{other}' is not a proxy's: use http, socks5 or socks5h"
                )))
            }
        };
        let host = match url.host_str() {
            Some(host) if !host.is_empty() => host.to_string(),
            _ => return Err(invalid("the proxy URL has no host".into())),
        };
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| invalid("its credentials are not UTF-8 once decoded".into()))
        };
        let credentials = match (url.username(), url.password()) {
            ("", None) => None,
            (user, password) => Some((decode(user)?, decode(password.unwrap_or_default())?)),
        };
        if let (Kind::Socks5 { .. }, Some((user, password))) = (kind, &credentials) {
            // RFC 1929: each 1 to 255 bytes.
            if user.is_empty() || user.len() > 255 || password.is_empty() || password.len() > 255 {
                return Err(invalid(
                    "SOCKS5 needs a username and a password of 1 to 255 bytes each".into(),
                ));
            }
        }
        Ok(ProxyAddr {
            kind,
            host,
            port: url.port().unwrap_or(1080),
            credentials,
        })
    }

    /// `host:port`, for messages.
    fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// `url` with its password (if any) as `***`, for messages; on the text, as it may not
/// parse.
fn redacted(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    let Some(at) = url[start..end].rfind('@') else {
        return url.to_string();
    };
    match url[start..start + at].find(':') {
        Some(colon) => format!("{}***{}", &url[..=start + colon], &url[start + at..]),
        None => url.to_string(),
    }
}

/// A stream to `host:port` through `proxy`; `target` (the URL's `host:port`) names it in
/// errors.
pub(super) async fn tunnel(
    proxy: &ProxyAddr,
    host: &str,
    port: u16,
    target: &str,
) -> Result<BoxIo> {
    let proxy_host = proxy.host.trim_start_matches('[').trim_end_matches(']');
    let connect = |addr: &str| {
        let addr = format!("the proxy {addr}");
        move |e| super::connect::connect_error(addr, e)
    };
    let refused = |answer: String, status: Option<u16>| {
        Error::Proxy(Box::new(ProxyError {
            proxy: proxy.authority(),
            target: target.to_string(),
            answer,
            status,
        }))
    };
    match proxy.kind {
        Kind::Http => {
            let tcp = TcpStream::connect((proxy_host, proxy.port))
                .await
                .map_err(connect(&proxy.authority()))?;
            tcp.set_nodelay(true)?;
            http_connect(Box::new(tcp), proxy, target, refused).await
        }
        Kind::Socks5 { remote_dns } => {
            let targets: Vec<(String, u16)> = if remote_dns {
                vec![(host.to_string(), port)]
            } else {
                // socks5://: the name is resolved here; each address is tried in turn.
                tokio::net::lookup_host((host, port))
                    .await
                    .map_err(|e| super::connect::connect_error(target.to_string(), e))?
                    .map(|addr| (addr.ip().to_string(), port))
                    .collect()
            };
            let mut last = None;
            for (host, port) in targets {
                let tcp = TcpStream::connect((proxy_host, proxy.port))
                    .await
                    .map_err(connect(&proxy.authority()))?;
                tcp.set_nodelay(true)?;
                match socks5(tcp, proxy, (host.as_str(), port)).await {
                    Ok(tcp) => return Ok(Box::new(tcp)),
                    Err(e) => last = Some(e),
                }
            }
            Err(match last {
                Some(Socks5Failure::Io(e)) => Error::Io(std::io::Error::new(
                    e.kind(),
                    format!("SOCKS5 with the proxy {}: {e}", proxy.authority()),
                )),
                Some(Socks5Failure::Refused(answer)) => refused(answer, None),
                None => refused("the target's name resolves to no address".into(), None),
            })
        }
    }
}

/// Asks an HTTP proxy for a tunnel to `target` over `stream`; bytes the proxy sent past its
/// answer stay in front of the stream.
async fn http_connect(
    mut stream: BoxIo,
    proxy: &ProxyAddr,
    target: &str,
    refused: impl Fn(String, Option<u16>) -> Error,
) -> Result<BoxIo> {
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some((user, password)) = &proxy.credentials {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        request += &format!("Proxy-Authorization: Basic {token}\r\n");
    }
    request += "\r\n";
    stream.write_all(request.as_bytes()).await?;
    let peer = format!("proxy {}", proxy.authority());
    let parsed = super::head::read_head(
        &mut stream,
        crate::protocol::handshake::parse_response,
        &peer,
    )
    .await?;
    let (response, leftover) =
        parsed.map_err(|e| refused(format!("its answer is not HTTP ({e})"), None))?;
    let status = response.status();
    if !status.is_success() {
        let reason = crate::protocol::handshake::reason_phrase(&response);
        return Err(refused(
            format!("{} {reason}", status.as_u16()),
            Some(status.as_u16()),
        ));
    }
    Ok(if leftover.is_empty() {
        stream
    } else {
        Box::new(Prefixed {
            bytes: leftover,
            read: 0,
            stream,
        })
    })
}

/// Why a SOCKS5 tunnel failed.
enum Socks5Failure {
    Io(std::io::Error),
    /// The proxy's answer, in words.
    Refused(String),
}

/// Asks a SOCKS5 proxy for a tunnel to `target` over `tcp`.
async fn socks5(
    tcp: TcpStream,
    proxy: &ProxyAddr,
    target: (&str, u16),
) -> std::result::Result<TcpStream, Socks5Failure> {
    use tokio_socks::tcp::Socks5Stream;
    use tokio_socks::Error as E;
    let connected = match &proxy.credentials {
        Some((user, password)) => {
            Socks5Stream::connect_with_password_and_socket(tcp, target, user, password).await
        }
        None => Socks5Stream::connect_with_socket(tcp, target).await,
    };
    connected
        .map(Socks5Stream::into_inner)
        .map_err(|e| match e {
            E::Io(e) => Socks5Failure::Io(e),
            E::PasswordAuthFailure(code) => Socks5Failure::Refused(format!(
                "the username and password were refused (status {code})"
            )),
            E::NoAcceptableAuthMethods => Socks5Failure::Refused(if proxy.credentials.is_some() {
                "no authentication method we offer is accepted".into()
            } else {
                "no authentication method we offer is accepted (does it need a username and \
                 password?)"
                    .into()
            }),
            other => Socks5Failure::Refused(other.to_string()),
        })
}

/// A stream with bytes already read from it put back in front.
struct Prefixed {
    bytes: Vec<u8>,
    read: usize,
    stream: BoxIo,
}

impl tokio::io::AsyncRead for Prefixed {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.read < this.bytes.len() {
            let n = buf.remaining().min(this.bytes.len() - this.read);
            buf.put_slice(&this.bytes[this.read..this.read + n]);
            this.read += n;
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Prefixed {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::{exempt, from_env, Kind, ProxyAddr};

    /// `from_env` over a fixed set of variables.
    fn chosen(secure: bool, host: &str, vars: &[(&str, &str)]) -> Option<(&'static str, String)> {
        from_env(secure, host, |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn each_scheme_reads_its_variables_in_curls_order() {
        let all = [
            ("wss_proxy", "a"),
            ("WSS_PROXY", "b"),
            ("https_proxy", "c"),
            ("HTTPS_PROXY", "d"),
            ("ws_proxy", "e"),
            ("WS_PROXY", "f"),
            ("http_proxy", "g"),
            ("HTTP_PROXY", "h"),
            ("all_proxy", "i"),
            ("ALL_PROXY", "j"),
        ];
        // Remove the variables one by one, first to last: each time the next one is chosen.
        for secure in [true, false] {
            let order: Vec<&str> = all
                .iter()
                .map(|(n, _)| *n)
                .filter(|n| {
                    !n.to_lowercase()
                        .starts_with(if secure { "ws_" } else { "wss" })
                })
                .filter(|n| {
                    !n.to_lowercase()
                        .starts_with(if secure { "http_" } else { "https" })
                })
                .collect();
            for (i, want) in order.iter().enumerate() {
                let vars: Vec<_> = all
                    .iter()
                    .filter(|(n, _)| !order[..i].contains(n))
                    .copied()
                    .collect();
                let got = chosen(secure, "example.com", &vars).map(|(n, _)| n);
                assert_eq!(
                    got,
                    Some(*want),
                    "secure: {secure}, without {:?}",
                    &order[..i]
                );
            }
            assert_eq!(chosen(secure, "example.com", &[]), None);
        }
        // ws:// never uses the HTTPS proxy, wss:// never the HTTP one.
        assert_eq!(chosen(false, "h", &[("https_proxy", "x")]), None);
        assert_eq!(chosen(true, "h", &[("http_proxy", "x")]), None);
    }

    #[test]
    fn empty_is_unset_and_cgi_ignores_upper_case_http_proxy() {
        let vars = [("http_proxy", ""), ("HTTP_PROXY", "h"), ("all_proxy", "i")];
        assert_eq!(
            chosen(false, "e.com", &vars),
            Some(("HTTP_PROXY", "h".into()))
        );
        let cgi = [
            ("REQUEST_METHOD", "GET"),
            ("HTTP_PROXY", "h"),
            ("all_proxy", "i"),
        ];
        assert_eq!(
            chosen(false, "e.com", &cgi),
            Some(("all_proxy", "i".into()))
        );
        let cgi_lower = [("REQUEST_METHOD", "GET"), ("http_proxy", "g")];
        assert_eq!(
            chosen(false, "e.com", &cgi_lower),
            Some(("http_proxy", "g".into()))
        );
    }

    #[test]
    fn no_proxy_exempts_listed_hosts_domains_and_blocks() {
        let list = "example.com, .corp.internal,10.0.0.0/8 ,::1,192.168.1.7, [fd00::]/8";
        let yes = [
            "example.com",
            "EXAMPLE.com.",
            "ws.example.com",
            "corp.internal",
            "a.b.corp.internal",
            "10.1.2.3",
            "[::1]",
            "192.168.1.7",
            "[fd12::1]",
        ];
        let no = [
            "notexample.com",
            "example.com.evil",
            "internal",
            "11.0.0.1",
            "192.168.1.70",
            "[::2]",
            // Not exempt unless listed, as in curl and Python.
            "localhost",
            "127.0.0.1",
        ];
        for host in yes {
            assert!(exempt(host, list), "{host}");
        }
        for host in no {
            assert!(!exempt(host, list), "{host}");
        }
        assert!(exempt("anything", " * "));
        assert!(!exempt("anything", "*.example.com"));
        assert!(!exempt("10.0.0.1", "10.0.0.0/33"));
        assert!(exempt("127.0.0.1", "localhost,127.0.0.1"));
        // Through the environment: lower case first.
        let vars = [
            ("no_proxy", "a.com"),
            ("NO_PROXY", "b.com"),
            ("all_proxy", "p"),
        ];
        assert_eq!(chosen(false, "x.a.com", &vars), None);
        assert!(chosen(false, "b.com", &vars).is_some());
        let upper = [("NO_PROXY", "b.com"), ("https_proxy", "p")];
        assert_eq!(chosen(true, "b.com", &upper), None);
    }

    #[test]
    fn proxy_urls_parse() {
        let p = ProxyAddr::parse("http://u%40x:p%3Aw@proxy.example:3128/", None).unwrap();
        assert_eq!(p.kind, Kind::Http);
        assert_eq!((p.host.as_str(), p.port), ("proxy.example", 3128));
        assert_eq!(p.credentials, Some(("u@x".into(), "p:w".into())));
        let p = ProxyAddr::parse("proxy.example", None).unwrap();
        assert_eq!((p.kind, p.port, p.credentials), (Kind::Http, 1080, None));
        let p = ProxyAddr::parse("socks5h://[::1]:9050", None).unwrap();
        assert_eq!(p.kind, Kind::Socks5 { remote_dns: true });
        assert_eq!(p.authority(), "[::1]:9050");
        let p = ProxyAddr::parse("SOCKS5://h", None).unwrap();
        assert_eq!(p.kind, Kind::Socks5 { remote_dns: false });
        assert!(ProxyAddr::parse("socks5://user@h", None).is_err());
        let err = ProxyAddr::parse("ftp://u:secret@h", Some("ALL_PROXY")).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("ALL_PROXY") && !message.contains("secret"),
            "{message}"
        );
        assert!(!format!("{:?}", ProxyAddr::parse("http://u:secret@h", None)).contains("secret"));
        for (url, shown) in [
            ("u:secret@h:99999", "u:***@h:99999"),
            ("http://u:secret@h:x/p@q", "http://u:***@h:x/p@q"),
            ("http://u@h:x", "http://u@h:x"),
            ("http://h:x", "http://h:x"),
        ] {
            assert_eq!(super::redacted(url), shown);
            let err = ProxyAddr::parse(url, None).unwrap_err().to_string();
            assert!(err.contains(shown) && !err.contains("secret"), "{err}");
        }
    }
}
