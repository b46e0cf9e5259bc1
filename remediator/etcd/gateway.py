"""etcd's v3 API through its JSON gateway (`POST /v3/kv/txn`, ...): the same requests from
asyncio (`Gateway`, over aiohttp) and from a thread or the CLI (`SyncGateway`, over urllib).

Keys and values travel base64-encoded, 64-bit numbers as strings. A request goes to the member
that answered last, then to each of the others in turn; none answering (down, cut off, or
without quorum: etcd then answers an error) is CoordinationUnavailable.
"""

from __future__ import annotations

import base64
import json
import ssl
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

import aiohttp

from remediator.errors import CoordinationUnavailable

if TYPE_CHECKING:
    from redis_autoheal.config import EtcdSettings

REQUEST_TIMEOUT_SECONDS = 2.0  # per member: etcd answers in milliseconds when it has quorum
Json = dict[str, Any]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def unb64(value: str) -> str:
    return base64.b64decode(value).decode()


def tls_context(settings: EtcdSettings) -> ssl.SSLContext | None:
    """The client's TLS context for https endpoints, from the config's files."""
    if not any(e.startswith("https:") for e in settings.endpoints):
        return None
    ca = None if settings.tls_ca_file is None else str(settings.tls_ca_file)
    context = ssl.create_default_context(cafile=ca)
    if settings.tls_cert_file is not None and settings.tls_key_file is not None:
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    return context


def _answer(status: int, body: bytes, endpoint: str) -> Json:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if status != 200 or not isinstance(data, dict) or "error" in data:
        detail = (
            data.get("error") if isinstance(data, dict) else body[:200].decode(errors="replace")
        )
        raise CoordinationUnavailable(f"etcd at {endpoint}: HTTP {status}: {detail}")
    return data


# One key's comparisons, requests and results, as the gateway spells them.


def compare(key: str, target: str, value: int | str, result: str = "EQUAL") -> Json:
    """Compare the key's CREATE / MOD (revision), VERSION, or VALUE; a missing key has 0s."""
    field = {"CREATE": "create_revision", "MOD": "mod_revision", "VERSION": "version"}
    if target == "VALUE":
        return {"key": b64(key), "target": "VALUE", "result": result, "value": b64(str(value))}
    return {"key": b64(key), "target": target, "result": result, field[target]: str(value)}


def put(key: str, value: str, lease: int = 0) -> Json:
    return {"request_put": {"key": b64(key), "value": b64(value), "lease": str(lease)}}


def get(key: str) -> Json:
    return {"request_range": {"key": b64(key)}}


def delete(key: str) -> Json:
    return {"request_delete_range": {"key": b64(key)}}


def txn(compares: list[Json], success: list[Json], failure: list[Json] | None = None) -> Json:
    return {"compare": compares, "success": success, "failure": failure or []}


def revision(answer: Json) -> int:
    return int(answer.get("header", {}).get("revision", 0))


def ranged(answer: Json, index: int) -> Json | None:
    """The key read by the transaction's `index`th request, if it exists: value (text) and
    create/mod revisions (ints)."""
    responses = answer.get("responses", [])
    kvs = (
        responses[index].get("response_range", {}).get("kvs", []) if index < len(responses) else []
    )
    if not kvs:
        return None
    kv = kvs[0]
    return {
        "value": unb64(kv.get("value", "")),
        "create_revision": int(kv.get("create_revision", 0)),
        "mod_revision": int(kv.get("mod_revision", 0)),
        "lease": int(kv.get("lease", 0)),
    }


class Gateway:
    """etcd's gateway from asyncio; see the module docstring."""

    def __init__(self, settings: EtcdSettings, timeout: float = REQUEST_TIMEOUT_SECONDS) -> None:
        self.endpoints = list(settings.endpoints)
        self._ssl = tls_context(settings)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def call(self, path: str, body: Json) -> Json:
        """POST `body` to `/v3/<path>` of the first member that answers."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        errors = []
        for _ in range(len(self.endpoints)):
            endpoint = self.endpoints[0]
            try:
                async with self._session.post(
                    f"{endpoint}/v3/{path}", json=body, ssl=self._ssl or True
                ) as r:
                    return _answer(r.status, await r.read(), endpoint)
            except (aiohttp.ClientError, TimeoutError, CoordinationUnavailable) as e:
                errors.append(f"{endpoint}: {e or type(e).__name__}")
            self.endpoints.append(self.endpoints.pop(0))  # the next member first, from now on
        raise CoordinationUnavailable("no etcd member answered: " + "; ".join(errors))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class SyncGateway:
    """etcd's gateway from a thread or the CLI; after a failure it fails at once for
    `quiet_seconds`, so that the breaker reads that follow are not each held up."""

    def __init__(
        self,
        settings: EtcdSettings,
        timeout: float = REQUEST_TIMEOUT_SECONDS,
        quiet_seconds: float = 2.0,
    ) -> None:
        self.endpoints = list(settings.endpoints)
        self._ssl = tls_context(settings)
        self._timeout = timeout
        self._quiet = quiet_seconds
        self._failed: tuple[float, str] | None = None

    def call(self, path: str, body: Json) -> Json:
        if self._failed is not None and time.monotonic() - self._failed[0] < self._quiet:
            raise CoordinationUnavailable(self._failed[1])
        errors = []
        data = json.dumps(body).encode()
        for _ in range(len(self.endpoints)):
            endpoint = self.endpoints[0]
            request = urllib.request.Request(  # noqa: S310 -- http(s) only: the config checks it
                f"{endpoint}/v3/{path}", data, {"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(  # noqa: S310
                    request, timeout=self._timeout, context=self._ssl
                ) as r:
                    answer = _answer(r.status, r.read(), endpoint)
                    self._failed = None
                    return answer
            except urllib.error.HTTPError as e:
                errors.append(f"{endpoint}: HTTP {e.code}")
            except (OSError, CoordinationUnavailable) as e:
                errors.append(f"{endpoint}: {e}")
            self.endpoints.append(self.endpoints.pop(0))
        message = "no etcd member answered: " + "; ".join(errors)
        self._failed = (time.monotonic(), message)
        raise CoordinationUnavailable(message)
