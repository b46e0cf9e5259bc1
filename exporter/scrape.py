"""The Redis commands of one performance scrape, sent together on a kept connection.

    INFO ALL, SLOWLOG LEN, SLOWLOG GET 1, LATENCY LATEST     one write, one round trip
    CLUSTER INFO                                             only when INFO says cluster mode
    CONFIG GET maxclients, maxmemory, io-threads, ...        cached for a minute
    LATENCY HISTOGRAM                                        only if exporter.latency_histograms

These are the commands redis_exporter runs by default (it sends `CONFIG GET *` on every scrape;
the few settings its families use change rarely, so they are read once a minute here). Only
INFO must succeed: a command the ACL user may not run, or one renamed away, leaves out its own
families and nothing else. An ACL user for the exporter needs `+ping +info +client|setname
+slowlog|len +slowlog|get +latency|latest +config|get` (and `+cluster|info` in cluster mode,
`+latency|histogram` for the histograms).
"""

from __future__ import annotations

import logging
import time
from collections.abc import ItemsView, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from redis_autoheal.errors import RedisReplyError
from redis_autoheal.redis_client import parse_info

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis_autoheal.links import RedisLink
    from redis_autoheal.resp import Command, Reply

logger = logging.getLogger(__name__)

CONFIG_CACHE_SECONDS = 60.0
# The settings redis_exporter turns into families, and `databases` (how many db_keys to send).
CONFIG_NAMES = (
    "maxclients",
    "maxmemory",
    "io-threads",
    "repl-backlog-size",
    "client-output-buffer-limit",
    "databases",
)
_FIRST: tuple[Command, ...] = (
    ("INFO", "ALL"),
    ("SLOWLOG", "LEN"),
    ("SLOWLOG", "GET", "1"),
    ("LATENCY", "LATEST"),
)


class LazyInfo(Mapping[str, str]):
    """INFO's fields, split from the reply's text on first use.

    A probe of module=all holds its performance result while its PING finishes; with a
    thousand probes at once, a thousand dicts of ~200 small strings each would be alive
    together and leave the heap fragmented. The text is one object; the dict is made when
    the families are written, and dropped with them.
    """

    __slots__ = ("_fields", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._fields: dict[str, str] | None = None

    @property
    def fields(self) -> dict[str, str]:
        if self._fields is None:
            self._fields = parse_info(self.text)
        return self._fields

    def __getitem__(self, key: str) -> str:
        return self.fields[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return self.fields.get(key, default)

    def items(self) -> ItemsView[str, str]:
        return self.fields.items()

    def field(self, key: str) -> str | None:
        """One field, found in the text without splitting all of it."""
        start = self.text.find(f"\n{key}:")
        if start < 0:
            return None
        start += len(key) + 2
        end = self.text.find("\r", start)
        return self.text[start : end if end >= 0 else None]


@dataclass(frozen=True, slots=True)
class LatencyHistogram:
    """One command's LATENCY HISTOGRAM: calls, and (upper bound in µs, cumulative count)."""

    calls: int
    buckets: tuple[tuple[float, int], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RedisScrape:
    """What one scrape read from Redis; the optional parts are None when refused or absent."""

    info: Mapping[str, str]
    cluster_info: Mapping[str, str] | None = None
    config: Mapping[str, str] = field(default_factory=dict)
    slowlog_length: int | None = None
    slowlog_last: tuple[int, float] | None = None  # (id, seconds) of the newest entry
    latency_latest: tuple[tuple[str, int, int], ...] = ()  # (event, unix time, latest ms)
    latency_histograms: Mapping[str, LatencyHistogram] | None = None
    connect_seconds: float = 0.0  # waiting for a connection: opening one if none was kept


async def send_together(link: RedisLink, commands: Sequence[Command]) -> tuple[list[Reply], float]:
    """Send `commands` in one write and read their replies, and how long getting a connection took.

    An error reply is returned in its place, not raised, so one refused command does not hide
    the others' replies; any other failure (a lost connection, the caller's deadline) raises,
    and the connection is then closed rather than handed back with replies still unread. The
    caller bounds the whole exchange, as TargetProber does each layer with asyncio.timeout.
    """
    return await link.request(commands)


def _text(reply: Reply) -> str | None:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else None


def _ints(reply: Reply) -> list[int]:
    """The leading integers of a reply list (SLOWLOG GET's and LATENCY LATEST's entries)."""
    out: list[int] = []
    if isinstance(reply, list):
        for item in reply:
            if not isinstance(item, int):
                break
            out.append(item)
    return out


def _slowlog_last(reply: Reply) -> tuple[int, float] | None:
    """(id, seconds) of the newest slow-log entry; (0, 0.0) when the log is empty."""
    if reply == []:
        return 0, 0.0
    if not isinstance(reply, list) or not isinstance(reply[0], list):
        return None
    numbers = _ints(reply[0])  # id, unix time, duration in µs, then the arguments
    if len(numbers) < 3:
        return None
    return numbers[0], numbers[2] / 1e6


def _latency_latest(reply: Reply) -> tuple[tuple[str, int, int], ...]:
    events: list[tuple[str, int, int]] = []
    if isinstance(reply, list):
        for entry in reply:
            if isinstance(entry, list) and entry and isinstance(entry[0], bytes):
                numbers = _ints(entry[1:])  # unix time, latest ms, all-time max ms
                if len(numbers) >= 2:
                    events.append((entry[0].decode("utf-8", "replace"), numbers[0], numbers[1]))
    return tuple(events)


def _histograms(reply: Reply) -> dict[str, LatencyHistogram] | None:
    """`LATENCY HISTOGRAM`: cmd -> {calls: n, histogram_usec: {bound: cumulative count}}."""
    if not isinstance(reply, (list, dict)):
        return None
    out: dict[str, LatencyHistogram] = {}
    for name, details in _pairs(reply):
        fields = {_text(k): v for k, v in _pairs(details)}
        calls = fields.get("calls")
        if not isinstance(name, bytes) or not isinstance(calls, int):
            continue
        buckets = tuple(
            (float(bound), count)
            for bound, count in _pairs(fields.get("histogram_usec"))
            if isinstance(bound, int) and isinstance(count, int)
        )
        out[name.decode("utf-8", "replace")] = LatencyHistogram(calls, buckets)
    return out


def _pairs(reply: Reply) -> list[tuple[object, object]]:
    """A map reply as pairs: a dict (RESP3) or a flat [key, value, ...] list (RESP2)."""
    if isinstance(reply, dict):
        return list(reply.items())
    if isinstance(reply, list):
        return [(reply[i], reply[i + 1]) for i in range(0, len(reply) - 1, 2)]
    return []


def _config_values(replies: Sequence[Reply]) -> dict[str, str]:
    values: dict[str, str] = {}
    for reply in replies:
        for key, value in _pairs(reply):
            name, text = _text(key), _text(value)
            if name is not None and text is not None:
                values[name] = text
    # Kept a minute per target, and mostly alike across a fleet: one shared copy of each.
    key = tuple(values.items())
    shared = _shared_configs.get(key)
    if shared is None:
        if len(_shared_configs) >= _SHARED_CONFIGS_MAX:
            _shared_configs.clear()
        shared = _shared_configs[key] = values
    return shared


_shared_configs: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
_NONE: frozenset[str] = frozenset()
_SHARED_CONFIGS_MAX = 1024


class Scraper:
    """Runs one target's scrape commands; keeps the CONFIG values a minute."""

    __slots__ = ("_config", "_logged", "latency_histograms", "target_name")

    def __init__(self, target_name: str, *, latency_histograms: bool = False) -> None:
        self.target_name = target_name
        self.latency_histograms = latency_histograms
        self._config: tuple[float, dict[str, str]] | None = None  # (read at, values)
        # Commands whose refusal was logged already; one shared empty set (216 bytes each).
        self._logged: frozenset[str] = _NONE

    def _refused(self, command: str, reply: Reply) -> bool:
        if not isinstance(reply, Exception):
            return False
        if command not in self._logged:
            self._logged |= {command}
            logger.info(
                "target %s: %s refused (%s); its metrics are left out",
                self.target_name,
                command,
                " ".join(str(reply).split())[:200],
            )
        return True

    async def scrape(self, client: RedisLink) -> RedisScrape:
        """Run the commands; raise only if INFO itself fails."""
        commands = list(_FIRST)
        now = time.monotonic()
        cached = self._config
        fetch_config = cached is None or now - cached[0] >= CONFIG_CACHE_SECONDS
        if fetch_config:
            commands += [("CONFIG", "GET", name) for name in CONFIG_NAMES]
        if self.latency_histograms:
            commands.append(("LATENCY", "HISTOGRAM"))
        replies, connect_seconds = await send_together(client, commands)
        info_reply = replies[0]
        if isinstance(info_reply, Exception):
            raise info_reply
        text = _text(info_reply)
        if text is None:
            raise RedisReplyError(f"INFO answered {type(info_reply).__name__}, not text")
        info = LazyInfo(text)

        config: dict[str, str]
        if fetch_config:
            config_replies = replies[len(_FIRST) : len(_FIRST) + len(CONFIG_NAMES)]
            usable = [r for r in config_replies if not self._refused("CONFIG GET", r)]
            config = _config_values(usable)
            self._config = (now, config)
        else:
            assert cached is not None
            config = cached[1]

        histograms = None
        if self.latency_histograms and not self._refused("LATENCY HISTOGRAM", replies[-1]):
            histograms = _histograms(replies[-1])

        cluster_info = None
        if "\ncluster_enabled:1" in text:
            (reply,), _ = await send_together(client, [("CLUSTER", "INFO")])
            if not self._refused("CLUSTER INFO", reply):
                text = _text(reply)
                cluster_info = None if text is None else parse_info(text)

        slowlog_length = replies[1]
        return RedisScrape(
            info=info,
            cluster_info=cluster_info,
            config=config,
            slowlog_length=None
            if self._refused("SLOWLOG LEN", slowlog_length) or not isinstance(slowlog_length, int)
            else slowlog_length,
            slowlog_last=None
            if self._refused("SLOWLOG GET", replies[2])
            else _slowlog_last(replies[2]),
            latency_latest=()
            if self._refused("LATENCY LATEST", replies[3])
            else _latency_latest(replies[3]),
            latency_histograms=histograms,
            connect_seconds=connect_seconds,
        )
