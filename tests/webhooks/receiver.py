"""A webhook receiver for the tests: verifies every delivery with the Standard Webhooks
reference library (PyPI `standardwebhooks`), an implementation independent of ours, and
appends what it saw to a JSON-lines log.

    receiver.py PORT_FILE SECRET_FILE LOG_FILE

Answers 204 to a delivery that verifies, 400 otherwise (a bad signature, a timestamp older
than the library's five minutes).
"""

import http.server
import json
import sys

from standardwebhooks import Webhook

port_file, secret_file, log_file = sys.argv[1:4]


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        entry = {"id": headers.get("webhook-id")}
        try:
            with open(secret_file) as f:
                secret = f.read().strip()
            payload = Webhook(secret).verify(body, headers)
            data = payload.get("data") or {}
            entry.update(ok=True, type=payload.get("type"), state=data.get("state"),
                         instance=data.get("instance"))
            code = 204
        except Exception as e:  # the library's verification errors, reported as such
            entry.update(ok=False, error=str(e))
            code = 400
        with open(log_file, "a") as f:
            f.write(json.dumps(entry) + "\n")
        self.send_response(code)
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
with open(port_file, "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
