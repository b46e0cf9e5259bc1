"""The pager: an HTTP server on 127.0.0.1 standing in for on-call's and ops' receivers.

Alertmanager's PagerDuty, e-mail and Slack receivers are replaced by webhooks to this sink
(`/oncall`, `/ops`), so a page can be asserted and nothing leaves the machine. Each POST is
kept with the time it arrived (this sink is the pager: its clock is when the page was received).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

MAX_BODY = 4 * 1024 * 1024


@dataclass(frozen=True)
class Page:
    """One notification Alertmanager delivered to the sink."""

    path: str  # /oncall or /ops
    received_at: float  # unix seconds
    body: dict[str, Any]  # Alertmanager's webhook payload (version 4)

    @property
    def receiver(self) -> str:
        return str(self.body.get("receiver", ""))

    @property
    def status(self) -> str:
        return str(self.body.get("status", ""))

    def summary(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "received_at": self.received_at,
            "receiver": self.receiver,
            "status": self.status,
            "alerts": self.alertnames(),
        }

    def alertnames(self) -> list[str]:
        return [str(a.get("labels", {}).get("alertname", "")) for a in self.body.get("alerts", [])]


class Sink:
    """A threaded HTTP server that answers 200 to every POST and keeps it as a Page."""

    def __init__(self) -> None:
        self._pages: list[Page] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"unparsed": raw.decode(errors="replace")}
                sink.add(Page(self.path, time.time(), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                """What arrived so far, as JSON (open it in a browser)."""
                body = json.dumps([p.summary() for p in sink.pages()], indent=1).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="pager-sink", daemon=True
        )

    def add(self, page: Page) -> None:
        with self._lock:
            self._pages.append(page)

    def pages(self, path: str | None = None) -> list[Page]:
        """What arrived (at `path` only, if given), oldest first."""
        with self._lock:
            return [p for p in self._pages if path is None or p.path == path]

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=10)
        self._server.server_close()
