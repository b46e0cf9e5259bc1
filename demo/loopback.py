"""HTTP to the stack's own services: JSON in and out, refused for anything off loopback."""

from __future__ import annotations

import ipaddress
import json
import socket
import urllib.parse
import urllib.request
from typing import Any

TIMEOUT_SECONDS = 5.0
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


class NotLoopback(ValueError):
    """A URL that does not point at 127.0.0.0/8: the stack never talks to anything else."""


def check_loopback(url: str) -> str:
    """`url` itself if it is http:// to a 127.x address, else NotLoopback."""
    parts = urllib.parse.urlsplit(url)
    try:
        address = ipaddress.ip_address(parts.hostname or "")
    except ValueError:
        address = None
    loopback = (
        parts.scheme == "http"
        and isinstance(address, ipaddress.IPv4Address)
        and address in LOOPBACK
    )
    if not loopback:
        raise NotLoopback(f"refusing {url!r}: only http://127.x.x.x is used here")
    return url


def get_json(url: str, params: dict[str, str] | None = None) -> Any:  # noqa: ANN401 - JSON
    if params:
        url = f"{url}?{urllib.parse.urlencode(params)}"
    request = urllib.request.Request(check_loopback(url), headers={"Accept": "application/json"})  # noqa: S310 - checked
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310 - checked
        return json.load(response)


def get_status(url: str) -> int:
    """The HTTP status of a GET (an error status too); OSError when nothing answers."""
    request = urllib.request.Request(check_loopback(url))  # noqa: S310 - checked
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310 - checked
            return int(response.status)
    except urllib.error.HTTPError as e:
        return e.code


def post_json(url: str, data: object, headers: dict[str, str] | None = None) -> int:
    """POST `data` as JSON; the HTTP status, an error status included."""
    body = json.dumps(data).encode()
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    request = urllib.request.Request(check_loopback(url), body, all_headers)  # noqa: S310 - checked
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310 - checked
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as e:
        return e.code


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (another process may still take it: retry)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
