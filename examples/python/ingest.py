"""The ingest service: accepts documents and answers at once; the pipeline does the rest.

    python ingest.py serve [--http-port 8080]     # POST /documents with the text as body
    python ingest.py submit FILE...               # or straight from the command line

Each document is XADDed to `docs:ingest` with its deterministic ID (a hash of its content),
and the caller gets `202 {"doc_id": ..., "entry_id": ...}` as soon as the server has
acknowledged the entry (under `appendfsync always`, once it is on disk). Submitting the same
document twice yields the same doc_id, so downstream stages can recognise the duplicate.
"""

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from common import (
    RetryDeadline,
    connect,
    doc_id_for,
    exit_with_parent,
    logger,
    publish_status,
    retrying,
)

MAX_DOCUMENT_BYTES = 1 << 20
log = logger("ingest")
_local = threading.local()


def client():
    """One connection per thread (redis-py clients are thread-safe, but this keeps each
    request's retries independent)."""
    if not hasattr(_local, "r"):
        _local.r = connect()
    return _local.r


def submit(r, content, deadline_s=5.0):
    """Add one document to `docs:ingest`; returns (doc_id, entry_id).

    Retries on connection errors for up to `deadline_s`; a retried XADD whose first attempt
    did reach the server leaves a duplicate entry with the same doc_id (at-least-once).
    """
    doc_id = doc_id_for(content)
    fields = {"doc_id": doc_id, "content": content, "submitted_at": f"{time.time():.6f}"}
    entry_id = retrying(lambda: r.xadd("docs:ingest", fields), "XADD docs:ingest", deadline_s, log)
    try:
        publish_status(r, doc_id, "ingest", "accepted", "ingest")
    except Exception as err:  # noqa: BLE001 - the status broadcast is best-effort
        log(f"status broadcast failed: {err}")
    return doc_id, entry_id


class Handler(BaseHTTPRequestHandler):
    def _reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health":
            self._reply(200, {"ok": True})
        else:
            self._reply(404, {"error": "not found"})

    def do_POST(self):
        if self.path != "/documents":
            self._reply(404, {"error": "not found"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0 or length > MAX_DOCUMENT_BYTES:
            self._reply(400, {"error": f"body must be 1..{MAX_DOCUMENT_BYTES} bytes"})
            return
        content = self.rfile.read(length).decode("utf-8", errors="replace")
        try:
            doc_id, entry_id = submit(client(), content)
        except RetryDeadline as err:
            self._reply(503, {"error": str(err)})
            return
        self._reply(202, {"doc_id": doc_id, "entry_id": entry_id})

    def log_message(self, fmt, *args):  # quiet: one line per request is too chatty
        pass


def main():
    parser = argparse.ArgumentParser(description="document ingest")
    sub = parser.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve", help="run the HTTP ingest service")
    serve.add_argument("--http-port", type=int, default=8080, help="0 picks a free port")
    files = sub.add_parser("submit", help="submit files directly")
    files.add_argument("paths", nargs="+")
    args = parser.parse_args()
    exit_with_parent()

    if args.cmd == "submit":
        r = connect()
        for path in args.paths:
            with open(path, encoding="utf-8", errors="replace") as f:
                doc_id, entry_id = submit(r, f.read())
            print(json.dumps({"path": path, "doc_id": doc_id, "entry_id": entry_id}))
        return
    httpd = ThreadingHTTPServer(("127.0.0.1", args.http_port), Handler)
    print(f"listening on http://127.0.0.1:{httpd.server_address[1]}", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
