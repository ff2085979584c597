#!/usr/bin/env python3
"""WebSockets over HTTP/2 (RFC 8441) with an independent client: the Python
`h2` package's H2Connection over one socket (plain, with prior knowledge, or
TLS with ALPN h2).

Opens N WebSocket streams (extended CONNECT) at once, sends one masked text
frame on each, checks each echo, closes each with 1000 (the close frame's DATA
carries END_STREAM), checks the server's close frame and END_STREAM, and prints
a JSON summary on stdout. Exits 0 when every stream went through, 1 otherwise.

Used by tests/tests/http2_python.rs; the interpreter with `h2` is set up by
scripts/h2-python.sh.
"""

import argparse
import json
import os
import socket
import ssl
import struct
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings


def masked_frame(opcode, payload):
    """One client frame, FIN set, masked (RFC 6455 section 5.2)."""
    key = os.urandom(4)
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def parse_frames(buf):
    """Complete server frames at the start of buf: ([(fin, opcode, payload)], rest).
    A masked server frame is an error."""
    frames = []
    while len(buf) >= 2:
        fin = buf[0] >> 7
        opcode = buf[0] & 0x0F
        if buf[1] & 0x80:
            raise ValueError("a masked frame from the server")
        n = buf[1] & 0x7F
        at = 2
        if n == 126:
            if len(buf) < 4:
                break
            n = struct.unpack("!H", buf[2:4])[0]
            at = 4
        elif n == 127:
            if len(buf) < 10:
                break
            n = struct.unpack("!Q", buf[2:10])[0]
            at = 10
        if len(buf) < at + n:
            break
        frames.append((fin, opcode, bytes(buf[at:at + n])))
        buf = buf[at + n:]
    return frames, buf


class Stream:
    def __init__(self, index):
        self.index = index
        self.status = None
        self.buf = b""
        self.echoed = False
        self.close = None
        self.ended = False
        self.error = None


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--cafile", help="the CA's certificate (PEM) to trust")
    parser.add_argument("--server-name", default="localhost")
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--path", default="/py")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()

    deadline = time.monotonic() + args.timeout
    sock = socket.create_connection((args.host, args.port), timeout=args.timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    alpn = None
    if args.tls:
        context = ssl.create_default_context(cafile=args.cafile)
        context.set_alpn_protocols(["h2"])
        sock = context.wrap_socket(sock, server_hostname=args.server_name)
        alpn = sock.selected_alpn_protocol()
        if alpn != "h2":
            print(json.dumps({"error": f"ALPN {alpn!r}, not h2"}))
            return 1
    scheme = "https" if args.tls else "http"
    authority = f"{args.host}:{args.port}"

    config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
    conn = h2.connection.H2Connection(config=config)
    conn.initiate_connection()
    # One WINDOW_UPDATE for the connection, so that no more are needed.
    conn.increment_flow_control_window(16 << 20)
    sock.sendall(conn.data_to_send())

    streams = {}
    errors = []
    connection_error = None
    settings_seen = False

    def left():
        return deadline - time.monotonic()

    def pump():
        """Reads once and handles the events; False when the connection ended."""
        nonlocal settings_seen, connection_error
        sock.settimeout(max(left(), 0.01))
        data = sock.recv(65536)
        if not data:
            connection_error = connection_error or "the server closed the connection"
            return False
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.RemoteSettingsChanged):
                settings_seen = True
            elif isinstance(event, h2.events.ResponseReceived):
                stream = streams[event.stream_id]
                headers = dict(event.headers)
                stream.status = int(headers.get(":status", "0"))
                if stream.status == 200:
                    text = f"hello {stream.index}".encode()
                    conn.send_data(event.stream_id, masked_frame(0x1, text))
                else:
                    stream.error = f"status {stream.status}"
            elif isinstance(event, h2.events.DataReceived):
                stream = streams[event.stream_id]
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                stream.buf += event.data
                try:
                    frames, stream.buf = parse_frames(stream.buf)
                except ValueError as e:
                    stream.error = str(e)
                    continue
                for fin, opcode, payload in frames:
                    if opcode == 0x1 and not stream.echoed:
                        if payload != f"hello {stream.index}".encode() or not fin:
                            stream.error = f"echo {payload!r}"
                            continue
                        stream.echoed = True
                        close = masked_frame(0x8, struct.pack("!H", 1000) + b"done")
                        conn.send_data(event.stream_id, close, end_stream=True)
                    elif opcode == 0x8:
                        stream.close = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                    else:
                        stream.error = f"unexpected frame {opcode} {payload[:32]!r}"
            elif isinstance(event, h2.events.StreamEnded):
                streams[event.stream_id].ended = True
            elif isinstance(event, h2.events.StreamReset):
                streams[event.stream_id].error = f"reset {event.error_code!r}"
            elif isinstance(event, h2.events.ConnectionTerminated):
                connection_error = f"GOAWAY {event.error_code!r} {event.additional_data!r}"
        out = conn.data_to_send()
        if out:
            sock.sendall(out)
        return True

    def done():
        return all(s.error or (s.ended and s.close is not None) for s in streams.values())

    try:
        while not settings_seen and left() > 0:
            if not pump():
                break
        remote = conn.remote_settings
        if not settings_seen:
            raise RuntimeError("no SETTINGS from the server")
        if remote.enable_connect_protocol != 1:
            raise RuntimeError("the server did not send SETTINGS_ENABLE_CONNECT_PROTOCOL = 1")
        if remote.max_concurrent_streams < args.streams:
            raise RuntimeError(f"the server allows {remote.max_concurrent_streams} streams")
        for i in range(args.streams):
            stream_id = conn.get_next_available_stream_id()
            streams[stream_id] = Stream(i)
            conn.send_headers(stream_id, [
                (":method", "CONNECT"),
                (":protocol", "websocket"),
                (":scheme", scheme),
                (":path", f"{args.path}/{i}"),
                (":authority", authority),
                ("sec-websocket-version", "13"),
            ])
        sock.sendall(conn.data_to_send())
        while not done() and connection_error is None and left() > 0:
            if not pump():
                break
    except (OSError, RuntimeError, h2.exceptions.H2Error) as e:
        connection_error = f"{type(e).__name__}: {e}"

    for stream in streams.values():
        if stream.error:
            errors.append(f"stream {stream.index}: {stream.error}")
        elif not (stream.ended and stream.close is not None):
            errors.append(f"stream {stream.index}: unfinished (status {stream.status}, "
                          f"echoed {stream.echoed}, close {stream.close}, ended {stream.ended})")
    summary = {
        "streams": args.streams,
        "alpn": alpn,
        "accepted": sum(1 for s in streams.values() if s.status == 200),
        "echoed": sum(1 for s in streams.values() if s.echoed),
        "closed_1000": sum(1 for s in streams.values() if s.close == 1000),
        "ended": sum(1 for s in streams.values() if s.ended),
        "connection_error": connection_error,
        "errors": len(errors),
        "first_errors": errors[:10],
    }
    print(json.dumps(summary))
    sock.close()
    ok = connection_error is None and not errors and summary["closed_1000"] == args.streams
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
