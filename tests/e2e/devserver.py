#!/usr/bin/env python3
"""A developer's local server for the intercept tests (stdlib only).

devserver.py NAME PORT      serve on 127.0.0.1:PORT
  GET /big?n=BYTES          BYTES of a fixed pattern (Content-Length)
  POST /upload              the sha256 of the request body (any framing)
  GET /ws (Upgrade)         a WebSocket echo (text frames)
  GET /trailers             a chunked answer with a trailer (x-checksum: abc)
  GET /headers              the request's fields, "name: value" a line
  anything else             "NAME local: METHOD PATH"
devserver.py wsclient HOST PORT PATH TEXT [HEADER:VALUE]
  prints the echo of TEXT over a WebSocket, exit 1 on failure
"""
import base64
import hashlib
import os
import socket
import struct
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
PATTERN = bytes(range(256)) * 256  # 64 KiB


def pattern(n):
    full, rest = divmod(n, len(PATTERN))
    for _ in range(full):
        yield PATTERN
    if rest:
        yield PATTERN[:rest]


def recv_exact(f, n):
    data = f.read(n)
    if len(data) != n:
        raise EOFError
    return data


def ws_read(f):
    b1, b2 = recv_exact(f, 2)
    n = b2 & 0x7F
    if n == 126:
        n = struct.unpack("!H", recv_exact(f, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", recv_exact(f, 8))[0]
    mask = recv_exact(f, 4) if b2 & 0x80 else None
    data = bytearray(recv_exact(f, n))
    if mask:
        for i in range(n):
            data[i] ^= mask[i % 4]
    return b1 & 0x0F, bytes(data)


def ws_frame(payload, masked):
    head = bytearray([0x81])
    n = len(payload)
    bit = 0x80 if masked else 0
    if n < 126:
        head.append(bit | n)
    elif n < 65536:
        head.append(bit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(bit | 127)
        head += struct.pack("!Q", n)
    if not masked:
        return bytes(head) + payload
    mask = os.urandom(4)
    return bytes(head) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    name = "dev"

    def log_message(self, *args):
        pass

    def reply(self, body, status=200):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/big"):
            n = int(self.path.split("n=")[1])
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            for chunk in pattern(n):
                self.wfile.write(chunk)
            return
        if self.path.startswith("/ws") and self.headers.get("Upgrade", "").lower() == "websocket":
            key = self.headers["Sec-WebSocket-Key"]
            accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept)
            self.end_headers()
            self.wfile.flush()
            while True:
                try:
                    op, data = ws_read(self.rfile)
                except EOFError:
                    break
                if op == 8:
                    break
                self.wfile.write(ws_frame(b"echo: " + data, False))
                self.wfile.flush()
            self.close_connection = True
            return
        if self.path.startswith("/trailers"):
            # chunked, with a trailer; X-Hop is for this hop only (Connection)
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Trailer", "x-checksum")
            self.send_header("Connection", "keep-alive, x-hop")
            self.send_header("X-Hop", "1")
            self.end_headers()
            for part in (b"part1 ", b"part2\n"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\nx-checksum: abc\r\n\r\n")
            return
        if self.path.startswith("/headers"):
            # the request's fields as they came, one a line
            self.reply("".join("%s: %s\n" % (k.lower(), v)
                               for k, v in self.headers.items()).encode())
            return
        self.reply(("%s local: GET %s\n" % (self.name, self.path)).encode())

    def do_POST(self):
        h = hashlib.sha256()
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                left = size
                while left:
                    data = self.rfile.read(min(left, 1 << 16))
                    h.update(data)
                    left -= len(data)
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length", "0"))
            while left:
                data = self.rfile.read(min(left, 1 << 16))
                h.update(data)
                left -= len(data)
        self.reply((h.hexdigest() + "\n").encode())


def ws_client(host, port, path, text, header=None):
    s = socket.create_connection((host, int(port)), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    extra = "%s\r\n" % header.replace(":", ": ", 1) if header else ""
    s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n"
               % (path, host, key, extra)).encode())
    f = s.makefile("rb")
    status = f.readline()
    if b" 101 " not in status:
        sys.exit("no upgrade: %r" % status)
    while f.readline() not in (b"\r\n", b""):
        pass
    s.sendall(ws_frame(text.encode(), True))
    op, data = ws_read(f)
    print(data.decode())


def serve(handler, name, port):
    """Serve handler (its .name set to name) on 127.0.0.1:port until killed."""
    handler.name = name
    srv = ThreadingHTTPServer(("127.0.0.1", int(port)), handler)
    srv.daemon_threads = True
    srv.serve_forever()


def main():
    if sys.argv[1] == "wsclient":
        ws_client(*sys.argv[2:])
        return
    serve(Handler, sys.argv[1], sys.argv[2])


if __name__ == "__main__":
    main()
