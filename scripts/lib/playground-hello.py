#!/usr/bin/python3
"""The playground's app image playground.kbridge.dev/hello (run by
follow-deployments --run, scripts/lib/playground-pod.py): an HTTP server on
each port given, answering every GET with "hello from POD\n" (POD: $HOSTNAME,
the pod's name, as a kubelet sets it). Standard library only."""
import http.server
import os
import socketserver
import sys
import threading

NAME = os.environ.get("HOSTNAME", "?")


class Hello(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = ("hello from %s\n" % NAME).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    servers = [Server(("0.0.0.0", int(p)), Hello) for p in sys.argv[1:]]
    for s in servers[1:]:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
