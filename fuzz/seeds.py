#!/usr/bin/env python3
"""Writes the committed seed corpus, fuzz/corpus/<target>/<name>: a few hand-made inputs
per fuzz target in that target's input format, so every run starts from the formats'
interesting corners instead of rediscovering them. Run again after changing a target's
input format; `git add -f` the new files (.gitignore keeps out what libFuzzer adds).
"""
import base64
import os
import shutil
import struct
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's sample key
ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # ... and its accept value


def frame(opcode, payload=b"", fin=True, rsv=0, mask=None, length=None):
    """One frame; `length` overrides the declared length (truncated or lying frames)."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 1 << 16:
        head += bytes([bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", n)
    if mask:
        head += mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + payload


M = b"\x37\xfa\x21\x3d"  # RFC 6455 §5.7's mask


def compress(data, wbits=15, level=6, obj=None):
    """permessage-deflate's payload: raw deflate, sync-flushed, without 00 00 ff ff."""
    c = obj or zlib.compressobj(level, zlib.DEFLATED, -wbits)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def request(*headers, line=b"GET /chat HTTP/1.1"):
    return line + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n"


BASE = [b"Host: server.example.com", b"Upgrade: websocket", b"Connection: Upgrade",
        b"Sec-WebSocket-Key: " + KEY, b"Sec-WebSocket-Version: 13"]


def response(*headers, line=b"HTTP/1.1 101 Switching Protocols"):
    return line + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n"


OK101 = [b"Upgrade: websocket", b"Connection: Upgrade", b"Sec-WebSocket-Accept: " + ACCEPT]


def inflate_frames(*frames):
    """The inflate target's frames: [FIN bit | 1 text, 2 binary, 0 continuation][len][bytes]."""
    out = b""
    for first, payload in frames:
        assert len(payload) < 256
        out += bytes([first, len(payload)]) + payload
    return out


def fragments(opcode, payload, size):
    """`payload` as inflate-target frames of `size` bytes, FIN on the last."""
    chunks = [payload[i:i + size] for i in range(0, len(payload), size)] or [b""]
    return [((0x80 if i == len(chunks) - 1 else 0) | (opcode if i == 0 else 0), c)
            for i, c in enumerate(chunks)]


def envelope(kind, payload_kind, body, payload, origin=b"node-one"):
    return b"us1" + origin + kind + payload_kind + body + payload


def ids(*names):
    return struct.pack(">I", len(names)) + b"".join(struct.pack(">I", len(n)) + n for n in names)


def seeds():
    hello = compress(b"Hello")
    takeover = zlib.compressobj(6, zlib.DEFLATED, -15)
    first, second = compress(b"Hello", obj=takeover), compress(b"Hello", obj=takeover)
    json = b'{"type":"chat","room":"lobby","text":"hello, hello, hello"}' * 4
    small = compress(json, wbits=9)
    bomb = compress(b"\0" * 200000, level=9)
    utf8 = "κόσμε".encode()
    return {
        "frame_decode": {
            "text-unmasked": b"\x81\x05",
            "text-masked": b"\x81\x85" + M,
            "binary-len16": b"\x82\x7e\x01\x00",
            "binary-len64": b"\x82\xff\x00\x00\x00\x00\x00\x01\x00\x00" + M,
            "len64-msb-set": b"\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00",
            "close": b"\x88\x82" + M,
            "ping-not-fin": b"\x09\x00",
            "rsv-bits": b"\xf1\x00",
            "truncated-len16": b"\x82\x7e\x01",
        },
        "connection": {
            # The first byte is where the target splits the rest in two.
            "rfc-masked-hello": b"\x05" + frame(1, b"Hello", mask=M),
            "rfc-unmasked-hello": b"\x03" + frame(1, b"Hello"),
            "fragmented-ping-between": b"\x09" + frame(1, b"Hel", fin=False, mask=M)
            + frame(9, b"ping", mask=M) + frame(0, b"lo", mask=M),
            "fragmented-unmasked": b"\x04" + frame(1, b"Hel", fin=False) + frame(0, b"lo"),
            "utf8-split-in-a-char": b"\x08" + frame(1, utf8[:3], fin=False, mask=M)
            + frame(0, utf8[3:], mask=M),
            "invalid-utf8": b"\x02" + frame(1, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80", mask=M),
            "binary-len16": b"\x40" + frame(2, bytes(range(256)) * 2, mask=M),
            "ping-pong": b"\x06" + frame(9, b"Hello", mask=M) + frame(10, b"Hello", mask=M),
            "close-1000-reason": b"\x07" + frame(1, b"bye", mask=M)
            + frame(8, struct.pack(">H", 1000) + b"done", mask=M),
            "close-unmasked": b"\x01" + frame(8, struct.pack(">H", 1001)),
            "close-1005-invalid": b"\x01" + frame(8, struct.pack(">H", 1005), mask=M),
            "close-one-byte": b"\x01" + frame(8, b"\x03", mask=M),
            "close-then-data": b"\x03" + frame(8, b"", mask=M) + frame(1, b"late", mask=M),
            "continuation-first": b"\x02" + frame(0, b"orphan", mask=M),
            "reserved-opcode": b"\x02" + frame(3, b"", mask=M),
            "rsv1-without-deflate": b"\x02" + frame(1, b"x", rsv=4, mask=M),
            "control-fragmented": b"\x02" + frame(9, b"", fin=False, mask=M),
            "declared-longer": b"\x02" + frame(2, b"abc", mask=M, length=70000),
        },
        "handshake_server": {
            "rfc6455-request": request(*BASE, b"Origin: http://example.com",
                                       b"Sec-WebSocket-Protocol: chat, superchat"),
            "browser-like": request(b"Host: localhost:8089", b"Connection: keep-alive, Upgrade",
                                    b"Pragma: no-cache", b"User-Agent: Mozilla/5.0",
                                    b"Upgrade: websocket", b"Origin: http://localhost:8089",
                                    b"Sec-WebSocket-Version: 13", b"Accept-Encoding: gzip",
                                    b"Sec-WebSocket-Key: L3vSWlgMnhQWv2FldG/QTQ==",
                                    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
                                    line=b"GET /ws?room=lobby HTTP/1.1"),
            "lowercase-names": request(*(h.lower() for h in BASE)),
            "missing-key": request(*BASE[:3], BASE[4]),
            "short-key": request(*BASE[:3], b"Sec-WebSocket-Key: c2hvcnQ=", BASE[4]),
            "version-8": request(*BASE[:4], b"Sec-WebSocket-Version: 8"),
            "post": request(*BASE, line=b"POST /chat HTTP/1.1"),
            "http-1.0": request(*BASE, line=b"GET /chat HTTP/1.0"),
            "origin-not-allowed": request(*BASE, b"Origin: http://evil.example.org.attacker"),
            "connection-close": request(BASE[0], BASE[1], b"Connection: close", *BASE[3:]),
            "incomplete": request(*BASE)[:-2],
            "with-leftover-frame": request(*BASE) + frame(1, b"Hello", mask=M),
            "not-http": b"NOT HTTP AT ALL\r\n\r\n",
        },
        "handshake_client": {
            "rfc6455-101": response(*OK101),
            "101-chat": response(*OK101, b"Sec-WebSocket-Protocol: chat"),
            "101-unoffered-protocol": response(*OK101, b"Sec-WebSocket-Protocol: foo"),
            "101-extension": response(*OK101, b"Sec-WebSocket-Extensions: permessage-deflate"),
            "101-mixed-case": response(b"upgrade: WebSocket", b"connection: keep-alive, upgrade",
                                       b"sec-websocket-accept: " + ACCEPT),
            "101-bad-accept": response(*OK101[:2], b"Sec-WebSocket-Accept: xxxx"),
            "101-no-upgrade": response(*OK101[1:]),
            "400": response(b"Content-Length: 0", line=b"HTTP/1.1 400 Bad Request"),
            "http-1.0": response(*OK101, line=b"HTTP/1.0 101 Switching Protocols"),
            "incomplete": response(*OK101)[:-2],
        },
        "inflate": {
            # First byte: 0x3f = both windows 15 bits, context takeover (see inflate.rs).
            "rfc7692-hello": b"\x3f" + inflate_frames((0x81, hello)),
            "rfc7692-fragmented": b"\x3f" + inflate_frames((0x01, hello[:3]), (0x80, hello[3:])),
            "rfc7692-takeover": b"\x3f" + inflate_frames((0x81, first), (0x81, second)),
            "rfc7692-no-takeover": b"\xff" + inflate_frames((0x81, first), (0x81, second)),
            "rfc7692-stored-block": b"\x3f" + inflate_frames((0x81, b"\x00\x05\x00\xfa\xffHello\x00")),
            "rfc7692-bfinal": b"\x3f" + inflate_frames((0x81, b"\xf3\x48\xcd\xc9\xc9\x07\x00\x00")),
            "empty-message": b"\x3f" + inflate_frames((0x82, b"\x00")),
            "json-9-bit-window": b"\x09" + inflate_frames(*fragments(2, small, 200)),
            "over-the-limit": b"\x3f" + inflate_frames(*fragments(2, bomb, 250)),
            "not-deflate": b"\x3f" + inflate_frames((0x81, b"\xff" * 16)),
            # Found by fuzzing: one inflate step both passed the limit and reached corrupt
            # data, so whole and split input gave different errors.
            "limit-before-corrupt-data": base64.b64decode(
                "P4LT7MExAQAAAMKg9U9tBn+gAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                "AAAAAAAACgAAAAAAAAAAAAAAAAAAAAAAAAAAAFsAAAAAAAAAAAAAAAAAgNcAgICAgICAgICA"
                "gICAgICAgICAgICAgICAgICAgICAgICAgICAgIB+gICAgICAgICAgAAAAAAAAAAAAAAAAAAA"
                "AAAAAICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICA"
            ),
        },
        "deflate_offer": {
            # Two config bytes (flags, windows: 0x66 = 15 and 15, 0x00 = 9 and 9), then one
            # Sec-WebSocket-Extensions line per input line.
            "bare": b"\x00\x66permessage-deflate",
            "chrome": b"\x00\x66permessage-deflate; client_max_window_bits",
            "rfc7692-server-bits": b"\x00\x66permessage-deflate; client_max_window_bits; server_max_window_bits=10",
            "rfc7692-fallback": b"\x00\x66permessage-deflate; server_max_window_bits=8, "
            b"permessage-deflate; server_max_window_bits=10; client_no_context_takeover",
            "all-params": b"\x03\x00permessage-deflate; server_no_context_takeover; "
            b"client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=9",
            "client-bits-8": b"\x00\x31permessage-deflate; client_max_window_bits=8",
            "quoted": b'\x00\x66permessage-deflate; client_max_window_bits="10"',
            "quoted-escape": b'\x00\x66permessage-deflate; server_max_window_bits="1\\2"',
            "unterminated-quote": b'\x00\x66permessage-deflate; server_max_window_bits="12',
            "duplicate": b"\x00\x66permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "unknown-param": b"\x00\x66permessage-deflate; foo=1, permessage-deflate",
            "bits-16": b"\x00\x66permessage-deflate; server_max_window_bits=16",
            "bits-leading-zero": b"\x00\x66permessage-deflate; client_max_window_bits=09",
            "other-extensions": b"\x00\x66x-webkit-deflate-frame, foo; bar=baz, permessage-deflate",
            "two-lines": b"\x01\x24foo\npermessage-deflate; server_no_context_takeover",
            "whitespace": b"\x00\x66 ,, permessage-deflate \t;\tclient_max_window_bits , ",
            "empty": b"\x00\x66",
        },
        "deflate_answer": {
            # Two config bytes for our offer, as deflate_offer; then the answer's lines.
            "bare": b"\x00\x66permessage-deflate",
            "client-bits-10": b"\x00\x66permessage-deflate; client_max_window_bits=10",
            "client-bits-8": b"\x00\x66permessage-deflate; client_max_window_bits=8",
            "server-bits-8": b"\x00\x66permessage-deflate; server_max_window_bits=8",
            "no-takeover": b"\x00\x66permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            "all-9": b"\x03\x00permessage-deflate; server_no_context_takeover; "
            b"client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=9",
            "server-bits-over-offer": b"\x00\x01permessage-deflate; server_max_window_bits=15",
            "client-bits-over-offer": b"\x00\x16permessage-deflate; client_max_window_bits=12",
            "client-bits-no-value": b"\x00\x66permessage-deflate; client_max_window_bits",
            "quoted": b'\x00\x66permessage-deflate; server_max_window_bits="12"',
            "two-elements": b"\x00\x66permessage-deflate, permessage-deflate",
            "two-lines": b"\x00\x66permessage-deflate\npermessage-deflate",
            "not-offered": b"\x00\x66x-webkit-deflate-frame",
            "empty-line": b"\x00\x66",
        },
        "backplane_wire": {
            "broadcast-all-text": envelope(b"B", b"t", struct.pack(">I", 0xffffffff), b"hello"),
            "broadcast-ids-binary": envelope(b"B", b"b", ids(b"unisock:web-1:0001", b"unisock:0002"),
                                             b"\x00\x01\xff"),
            "broadcast-no-ids": envelope(b"B", b"t", ids(), b""),
            "direct-text": envelope(b"D", b"t", struct.pack(">I", 14) + b"unisock:b:0003", b"psst"),
            "direct-empty": envelope(b"D", b"b", struct.pack(">I", 0), b""),
            "huge-count": envelope(b"B", b"b", struct.pack(">I", 0xfffffffe), b""),
            "id-longer-than-input": envelope(b"D", b"t", struct.pack(">I", 1000) + b"x", b""),
            "text-not-utf8": envelope(b"D", b"t", struct.pack(">I", 1) + b"x", b"a\xff"),
            "unknown-kind": envelope(b"X", b"t", b"", b"hello"),
            "foreign": b"PUBLISH from someone else",
            "truncated-origin": b"us1node",
        },
        # First byte: even for text, odd for binary; 0xfe splits a run of messages.
        "resume_frames": {
            "message": b"\x00m lobby 7 3\nhello",
            "binary-message": b"\x01m lobby 7 3\n\x00\xff\n",
            "joined": b"\x00p lobby 7 0\n",
            "gap": b"\x00g lobby trimmed 7 9\n",
            "new-epoch": b"\x00g lobby epoch 8 0\n",
            "join": b"\x00j lobby 7 3\n",
            "leave": b"\x00l lobby\n",
            "send": b"\x01s\n\x01\x02",
            "run-with-hole": b"\xfe".join([
                b"\x00p r 1 0\n", b"\x00m r 1 1\na", b"\x00m r 1 3\nc",
                b"\x00m r 1 2\nb", b"\x00m r 1 3\nc", b"\x00g r expired 1 9\n",
                b"\x00m r 1 10\nj", b"\x00g r epoch 2 4\n", b"\x00m r 2 5\nx",
            ]),
            "sign": b"\x00m r +1 2\n",
            "huge-offset": b"\x00m r 1 18446744073709551616\n",
        },
    }


def main():
    total = 0
    for target, files in seeds().items():
        d = os.path.join(ROOT, target)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        for name, data in files.items():
            assert len(data) <= 4096, (target, name, len(data))
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
            total += len(data)
        print("%s: %d seeds" % (target, len(files)))
    print("%d bytes in all" % total)


if __name__ == "__main__":
    main()
