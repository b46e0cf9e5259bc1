"""Loopback-only helpers for the tests that run Prometheus or Alertmanager: a
daemon started and stopped around a block, and an HTTP server that records what is posted."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

from tests.support import free_port


def get_json(url: str) -> Any:  # parsed JSON: the caller indexes it
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def post_json(url: str, data: object) -> None:
    request = urllib.request.Request(
        url, json.dumps(data).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        response.read()


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError, ValueError, AssertionError):
            if check():
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


@contextlib.contextmanager
def daemon(argv: list[str], ready_url: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run `argv` until the block ends; wait for `ready_url` to answer 200 first."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        try:

            def ready() -> bool:
                if proc.poll() is not None:
                    raise RuntimeError(f"{argv[0]} exited {proc.returncode}: {log.read_text()}")
                with urllib.request.urlopen(ready_url, timeout=2) as response:
                    return response.status == 200

            wait_until(ready, 30, f"{argv[0]} at {ready_url}")
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def prometheus(binary: str, directory: Path) -> Iterator[str]:
    """Prometheus on a free loopback port with DIRECTORY/prometheus.yml, data and log in
    DIRECTORY, until the block ends: its URL."""
    url = f"http://127.0.0.1:{free_port()}"
    argv = [
        binary,
        f"--config.file={directory / 'prometheus.yml'}",
        f"--storage.tsdb.path={directory / 'data'}",
        f"--web.listen-address={url.removeprefix('http://')}",
    ]
    with daemon(argv, f"{url}/-/ready", directory / "prometheus.log"):
        yield url


@contextlib.contextmanager
def alertmanager(binary: str, directory: Path) -> Iterator[str]:
    """A single Alertmanager (no gossip) on a free loopback port with
    DIRECTORY/alertmanager.yml, data and debug log (DIRECTORY/alertmanager.log: muting by a
    time interval shows only there) in DIRECTORY, until the block ends: its URL."""
    url = f"http://127.0.0.1:{free_port()}"
    argv = [
        binary,
        f"--config.file={directory / 'alertmanager.yml'}",
        f"--storage.path={directory / 'data'}",
        f"--web.listen-address={url.removeprefix('http://')}",
        "--cluster.listen-address=",
        "--log.level=debug",
    ]
    with daemon(argv, f"{url}/-/ready", directory / "alertmanager.log"):
        yield url


class Recorder:
    """An HTTP server on 127.0.0.1 that answers 200 to every POST and keeps what it got."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, str], object]] = []
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with recorder._lock:
                    recorder.posts.append((self.path, dict(self.headers), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def received(self, path: str) -> list[tuple[dict[str, str], Any]]:
        with self._lock:
            return [(headers, body) for p, headers, body in self.posts if p == path]
