"""The page's HTTP server for scripts/browser.sh.

    python3 serve.py PAGE.html PORT_FILE RESULT_FILE

Binds 127.0.0.1 on a port the kernel picks (no race with other tests for a
fixed port) and writes it to PORT_FILE once listening; serves PAGE.html at /
(query strings are the page's business) and takes the page's report by
POST /result, written to RESULT_FILE (whole, by rename, so the script never
reads half of it). The first report wins. Runs until killed.

In the HTTP/2 run the page comes from the echo server's https origin, and its
report is a cross-origin POST here: a CORS-simple one (text/plain, so no
preflight), answered with Access-Control-Allow-Origin so the page may read
the answer. OPTIONS is answered too, should a browser preflight anyway.
"""

import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGE, PORT_FILE, RESULT_FILE = sys.argv[1:4]


def write_whole(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.split("?", 1)[0] not in ("/", "/index.html"):
            # favicon.ico and the like: nothing to serve, and no noise
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        with open(PAGE, "rb") as f:
            body = f.read()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        if self.path != "/result" or not 0 < length <= 1 << 20:
            self.send_response(400)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = self.rfile.read(length)
        if not os.path.exists(RESULT_FILE):
            write_whole(RESULT_FILE, body)
        self.send_response(204)
        self.send_header("Access-Control-Allow-Origin", "*")
        self.end_headers()

    def do_OPTIONS(self):
        self.send_response(204)
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Allow-Methods", "POST")
        self.send_header("Access-Control-Allow-Headers", "Content-Type")
        self.send_header("Access-Control-Allow-Private-Network", "true")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format, *args):
        sys.stderr.write("serve.py: " + (format % args) + "\n")


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
write_whole(PORT_FILE, str(server.server_address[1]).encode())
server.serve_forever()
