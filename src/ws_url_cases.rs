// Every rule of the WebSocket URL checks, with its message: the native unit tests
// (src/ws_url.rs) and the browser tests (tests/web_common) both check these, through
// different URL parsers. An expression, read with `include!`.
[
    ("ws://", "the host is empty"),
    ("ws://:80/", "the host is empty"),
    ("ws://user@/", "the host is empty"),
    (
        "ws://exa mple.com/",
        "the host contains ' ', which is not allowed",
    ),
    ("ws://a<b/", "the host contains '<', which is not allowed"),
    (
        "ws://exa mple.com:99999/",
        "the host contains ' ', which is not allowed",
    ),
    (
        "ws://127.0.0.1:99999/",
        "port 99999 is out of range (at most 65535)",
    ),
    (
        "ws://user:pw@127.0.0.1:99999/",
        "port 99999 is out of range (at most 65535)",
    ),
    ("ws://h:-1/", "the port '-1' is not a number"),
    ("ws://h:1:2/", "the port '1:2' is not a number"),
    ("ws://[::1]:8o/", "the port '8o' is not a number"),
    ("ws:h:99999", "port 99999 is out of range (at most 65535)"),
    ("ws://256.0.0.1/", "the host is not a valid IPv4 address"),
    ("ws://[::1/", "the host is not a valid IPv6 address"),
    ("ws://[::g]/", "the host is not a valid IPv6 address"),
    (
        "http://x/",
        "'http' is not a WebSocket scheme: use ws:// or wss://",
    ),
    (
        "https://x/",
        "'https' is not a WebSocket scheme: use ws:// or wss://",
    ),
    (
        "foo://x",
        "'foo' is not a WebSocket scheme: use ws:// or wss://",
    ),
    (
        "chat",
        "it is relative: use an absolute ws:// or wss:// URL",
    ),
    (
        "/chat",
        "it is relative: use an absolute ws:// or wss:// URL",
    ),
    ("  ", "it is empty"),
    ("", "it is empty"),
    (
        "ws://x/#top",
        "a WebSocket URL may not have a fragment ('#top')",
    ),
    ("ws://x/#", "a WebSocket URL may not have a fragment ('#')"),
]
