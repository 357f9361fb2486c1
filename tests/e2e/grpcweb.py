#!/usr/bin/python3
# A gRPC-web client over HTTP/1.1 (stdlib only), for the preview tests:
#   grpcweb.py URL ARG [CONTENT-TYPE]
# POSTs one gRPC-web message frame (flag 0, 4-byte length, ARG) to URL
# (http://HOST:PORT/kb.Echo/METHOD) with HTTP/1.1, reads the body's frames
# and prints, one a line:
#   http 200 application/grpc-web+proto    status, version and content type
#   msg TEXT                               each message frame
#   status CODE MESSAGE                    grpc-status and grpc-message, from
#                                          the trailer frame (flag 0x80) or,
#                                          for a trailers-only answer, the headers
#   where trailer|headers
# A malformed body (a frame cut short, an unknown flag, data after the
# trailer frame) exits 2.
# In text mode (CONTENT-TYPE application/grpc-web-text[+proto]) the request
# body is base64 in two separately padded pieces, and the answer is decoded
# from base64 padded anywhere (4 characters at a time) first; with ARG
# "!bad" the body is not base64.
import base64
import binascii
import http.client
import struct
import sys
import urllib.parse


def main():
    url, arg = sys.argv[1], sys.argv[2]
    ctype = sys.argv[3] if len(sys.argv) > 3 else "application/grpc-web+proto"
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=10)
    body = arg.encode()
    frame = b"\0" + struct.pack(">I", len(body)) + body
    text = "-text" in ctype
    if text:
        frame = base64.b64encode(frame[:4]) + base64.b64encode(frame[4:])
        if arg == "!bad":
            frame = b"AAAA*bad"
    c.request("POST", u.path, body=frame, headers={
        "Content-Type": ctype, "X-Grpc-Web": "1", "Accept": ctype})
    r = c.getresponse()
    ver = "1.1" if r.version == 11 else "1.0"
    print("http %d %s %s" % (r.status, ver, r.getheader("content-type", "-")))
    data = r.read()
    if r.status != 200:     # not gRPC-web: grpc-status, if any, in the head
        data = b""
    if text and r.status == 200:
        data = data.replace(b"\r", b"").replace(b"\n", b"")
        if len(data) % 4:
            sys.exit("base64 answer cut short")
        try:
            data = b"".join(base64.b64decode(data[k:k + 4], validate=True)
                            for k in range(0, len(data), 4))
        except binascii.Error as e:
            sys.exit("bad base64 answer: %s" % e)
    trailers = None
    i = 0
    while i < len(data):
        if trailers is not None or len(data) - i < 5:
            sys.exit("bad body: %r" % data[i:])
        flag, n = data[i], struct.unpack(">I", data[i + 1:i + 5])[0]
        part = data[i + 5:i + 5 + n]
        if len(part) != n:
            sys.exit("frame cut short")
        if flag == 0:
            print("msg %s" % part.decode())
        elif flag == 0x80:
            trailers = {}
            for line in part.decode().split("\r\n"):
                if line:
                    k, v = line.split(":", 1)
                    trailers[k.strip().lower()] = v.strip()
        else:
            sys.exit("unknown frame flag %#x" % flag)
        i += 5 + n
    if trailers is None and r.getheader("grpc-status") is not None:
        trailers = {"grpc-status": r.getheader("grpc-status"),
                    "grpc-message": r.getheader("grpc-message", "")}
        where = "headers"
    else:
        where = "trailer"
    if trailers is None:
        print("status none")
        sys.exit(2)
    print("status %s %s" % (trailers.get("grpc-status"),
                            urllib.parse.unquote(trailers.get("grpc-message", ""))))
    print("where %s" % where)


if __name__ == "__main__":
    main()
