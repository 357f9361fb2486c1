#!/usr/bin/env python3
"""A developer's local web app for the preview tests and the demo (stdlib only).

previewsite.py NAME PORT    serve on 127.0.0.1:PORT
  GET /             an HTML page "NAME's local web" whose script fetches
                    /api/hello from the same origin and shows the answer
  GET /api/hello    "NAME api"
  GET /headers      the request's headers as JSON (to check what a proxy
                    added or removed)
  anything else     "NAME local: METHOD PATH"
"""
import json
import sys
from http.server import BaseHTTPRequestHandler

from devserver import serve

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>%(name)s's local web</title></head>
<body style="font: 24px sans-serif; background: #fff4d6">
<h1>%(name)s's local web</h1>
<p>/api/hello says: <b id="api">(loading)</b></p>
<script>
fetch('/api/hello').then(r => r.text()).then(t => {
  document.getElementById('api').textContent = t.trim();
}).catch(e => { document.getElementById('api').textContent = 'fetch failed: ' + e; });
</script>
</body></html>
"""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    name = "dev"

    def log_message(self, *args):
        pass

    def reply(self, body, ctype="text/plain; charset=utf-8", status=200):
        body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/":
            self.reply(PAGE % {"name": self.name}, "text/html; charset=utf-8")
        elif path == "/api/hello":
            self.reply("%s api\n" % self.name)
        elif path == "/headers":
            self.reply(json.dumps([[k.lower(), v] for k, v in self.headers.items()]) + "\n",
                       "application/json")
        else:
            self.reply("%s local: %s %s\n" % (self.name, self.command, self.path))

    do_HEAD = do_GET


def main():
    serve(Handler, sys.argv[1], sys.argv[2])


if __name__ == "__main__":
    main()
