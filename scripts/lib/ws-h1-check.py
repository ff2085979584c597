"""A minimal WebSocket client over HTTP/1.1 (RFC 6455), Python's standard
library only, for scripts/haproxy-h2.sh: opens N WebSockets to a URL's host
and port (all of them open at once), sends one text message on each and
checks the echo byte for byte, then closes each with 1000 and checks the
close reply (code 1000) and the end of the connection. Every read and write
is bounded by --timeout; the whole run by --deadline. Prints one line per
phase and exits 0 when every connection passed every step, else 1 (with the
first failures printed).

    python3 scripts/lib/ws-h1-check.py --port PORT [--host 127.0.0.1] [-n 200]
"""

import argparse
import base64
import hashlib
import os
import socket
import struct
import sys
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Fail(Exception):
    pass


def read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise Fail(f"connection ended after {len(buf)} of {n} bytes")
        buf += chunk
    return buf


def send_frame(sock, opcode, payload):
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(head + mask + body)


def recv_frame(sock):
    b0, b1 = read_exact(sock, 2)
    if b1 & 0x80:
        raise Fail("the server masked a frame")
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", read_exact(sock, 2))
    elif n == 127:
        (n,) = struct.unpack("!Q", read_exact(sock, 8))
    return b0 & 0x80, b0 & 0x0F, read_exact(sock, n)


def handshake(host, port, path, timeout):
    sock = socket.create_connection((host, port), timeout=timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise Fail(f"connection ended in the response head: {head[:200]!r}")
        head += chunk
        if len(head) > 16384:
            raise Fail("response head over 16 KiB")
    head, rest = head.split(b"\r\n\r\n", 1)
    if rest:
        raise Fail(f"bytes after the 101 before any message: {rest[:100]!r}")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1.1 101"):
        raise Fail(f"status line {lines[0]!r}")
    fields = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    want = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
    if fields.get("sec-websocket-accept") != want:
        raise Fail(f"Sec-WebSocket-Accept {fields.get('sec-websocket-accept')!r}, want {want!r}")
    return sock


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/")
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--deadline", type=float, default=60.0)
    args = ap.parse_args()

    start = time.monotonic()
    failures = []
    socks = {}

    def step(name, fn):
        ok = 0
        t0 = time.monotonic()
        for i in list(socks if name != "open" else range(args.n)):
            if time.monotonic() - start > args.deadline:
                failures.append((i, name, f"past the {args.deadline:.0f} s deadline"))
                break
            try:
                fn(i)
                ok += 1
            except (Fail, OSError) as e:
                failures.append((i, name, f"{type(e).__name__}: {e}"))
                s = socks.pop(i, None)
                if s is not None:
                    s.close()
        print(f"   {name}: {ok} of {args.n} in {time.monotonic() - t0:.2f} s", flush=True)

    def open_one(i):
        socks[i] = handshake(args.host, args.port, args.path, args.timeout)

    def echo_one(i):
        msg = f"hello over HTTP/2 from websocket {i} " .encode() + os.urandom(8).hex().encode()
        send_frame(socks[i], 0x1, msg)
        fin, opcode, payload = recv_frame(socks[i])
        if (fin, opcode, payload) != (0x80, 0x1, msg):
            raise Fail(f"echo fin={fin} opcode={opcode} payload={payload[:80]!r}, want {msg!r}")

    def close_one(i):
        sock = socks[i]
        send_frame(sock, 0x8, struct.pack("!H", 1000))
        fin, opcode, payload = recv_frame(sock)
        if opcode != 0x8:
            raise Fail(f"opcode {opcode} where the close reply was due")
        code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
        if code != 1000:
            raise Fail(f"close reply code {code}, want 1000")
        # The server (through the proxy) then ends the connection.
        if sock.recv(1) != b"":
            raise Fail("bytes after the close reply")
        sock.close()
        del socks[i]

    # All open at once, so the proxy must carry them concurrently.
    step("open", open_one)
    step("echo", echo_one)
    step("close", close_one)
    for s in socks.values():
        s.close()
    for i, name, why in failures[:10]:
        print(f"   websocket {i}, {name}: {why}", flush=True)
    if len(failures) > 10:
        print(f"   ... and {len(failures) - 10} more failures", flush=True)
    passed = args.n - len({i for i, _, _ in failures})
    print(f"   {passed} of {args.n} websockets opened, echoed and closed with 1000", flush=True)
    sys.exit(0 if not failures and passed == args.n else 1)


if __name__ == "__main__":
    main()
