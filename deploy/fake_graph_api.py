#!/usr/bin/env python3
"""A tiny stand-in for Meta's Graph API, for deploy/smoke-test.sh.

    python3 deploy/fake_graph_api.py --port 18080 --record /tmp/sent.jsonl

Answers POST /<version>/<phone_number_id>/messages with {"messages":[{"id":"wamid.fake"}]} (plus the
usual envelope), and appends one JSON line per request to --record:
{"path": ..., "authorization": ..., "body": <parsed JSON or raw text>}. Anything else gets 404.
Standard library only.
"""

import argparse
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MESSAGES_PATH = re.compile(r"^/v[0-9]+(\.[0-9]+)?/[^/]+/messages/?$")


def make_handler(record_path, lock):
    class Handler(BaseHTTPRequestHandler):
        server_version = "fake-graph-api/1"

        def _reply(self, status, payload):
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw.decode("utf-8")) if raw else None
            except (UnicodeDecodeError, json.JSONDecodeError):
                body = raw.decode("utf-8", "replace")
            path = self.path.split("?", 1)[0]
            entry = {
                "path": path,
                "authorization": self.headers.get("Authorization", ""),
                "body": body,
            }
            with lock, open(record_path, "a", encoding="utf-8") as out:
                out.write(json.dumps(entry, ensure_ascii=False) + "\n")
            if not MESSAGES_PATH.match(path):
                self._reply(404, {"error": {"message": "unknown path", "code": 100}})
                return
            if isinstance(body, dict) and body.get("status") == "read":
                self._reply(200, {"success": True})
                return
            to = body.get("to", "") if isinstance(body, dict) else ""
            self._reply(
                200,
                {
                    "messaging_product": "whatsapp",
                    "contacts": [{"input": to, "wa_id": to}],
                    "messages": [{"id": "wamid.fake"}],
                },
            )

        def do_GET(self):  # noqa: N802
            if self.path == "/health":
                self._reply(200, {"status": "ok"})
            else:
                self._reply(404, {"error": {"message": "unknown path", "code": 100}})

        def log_message(self, fmt, *args):
            sys.stderr.write("fake-graph-api: " + (fmt % args) + "\n")

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", required=True, help="file that receives one JSON line per request")
    args = parser.parse_args()
    open(args.record, "a", encoding="utf-8").close()
    server = ThreadingHTTPServer((args.host, args.port), make_handler(args.record, threading.Lock()))
    sys.stderr.write(f"fake-graph-api: listening on {args.host}:{args.port}\n")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
