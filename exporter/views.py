"""The exporter's HTTP handlers: /probe, /metrics, /healthz and POST /-/reload."""

from __future__ import annotations

import math
import time

from aiohttp import web
from prometheus_client import REGISTRY
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, choose_encoder

from exporter import selfmetrics
from exporter.collector import ProbeCollector
from exporter.exposition import render
from exporter.probe import MODULES, TargetProber
from exporter.targets import BadTarget, StaleDirectory
from exporter.typedefs import FOLLOWERS, STATE
from redis_autoheal.probe import Layer

SCRAPE_TIMEOUT_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
# Answer this much before Prometheus gives up, as blackbox_exporter does (--timeout-offset).
TIMEOUT_OFFSET_SECONDS = 0.5
NAME_SHOWN = 64  # how much of an unknown name a 400 repeats

_PROBE_HEADERS = {"Content-Type": CONTENT_TYPE_PLAIN_0_0_4}
_PROBES = {
    (module, ok): selfmetrics.PROBES.labels(module, "success" if ok else "failure")
    for module in MODULES
    for ok in (True, False)
}
_DURATIONS = {module: selfmetrics.PROBE_DURATION.labels(module) for module in MODULES}


class BadProbeRequest(Exception):
    """A /probe request that cannot be answered: 400, the message on one line."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


def scrape_budget(header: str | None) -> float | None:
    """Seconds a probe may take so that it answers before the scraper's timeout, or None.

    The offset is taken off the scraper's timeout; a timeout under twice the offset is halved
    instead, so a short one still leaves the probe some time.
    """
    if header is None:
        return None
    try:
        seconds = float(header)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise BadProbeRequest(
            "bad_scrape_timeout",
            f"{SCRAPE_TIMEOUT_HEADER} must be a positive number of seconds, "
            f"got {header[:NAME_SHOWN]!r}",
        )
    if seconds > 2 * TIMEOUT_OFFSET_SECONDS:
        return seconds - TIMEOUT_OFFSET_SECONDS
    return seconds / 2


def _single(request: web.Request, name: str) -> str:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise BadProbeRequest("repeated_parameter", f"{name} is given {len(values)} times")
    return values[0] if values else ""


async def _parse(
    request: web.Request,
) -> tuple[str, TargetProber, tuple[Layer, ...], float | None]:
    """The module, prober, layers and time budget a /probe asks for; BadProbeRequest if bad."""
    name = _single(request, "target")
    module = _single(request, "module") or "all"
    if not name:
        raise BadProbeRequest(
            "missing_target", "missing target: use /probe?target=NAME&module=MODULE"
        )
    layers = MODULES.get(module)
    if layers is None:
        raise BadProbeRequest(
            "unknown_module",
            f"unknown module {module[:NAME_SHOWN]!r}: use one of {', '.join(MODULES)}",
        )
    budget = scrape_budget(request.headers.get(SCRAPE_TIMEOUT_HEADER))
    prober = await _prober(request, name)
    if "://" in name:  # a URL target has no SSH host and unit: no systemd layer
        if module == "systemd":
            raise BadProbeRequest(
                "no_systemd_layer",
                "module=systemd needs a configured target with an ssh section, not a URL",
            )
        layers = tuple(layer for layer in layers if layer is not Layer.SYSTEMD)
    return module, prober, layers, budget


async def _prober(request: web.Request, name: str) -> TargetProber:
    state = request.app[STATE]
    for _ in range(3):  # a reload while a name resolves hands over to the new directory
        try:
            return await state.directory.prober(name)
        except BadTarget as e:
            raise BadProbeRequest(e.reason, str(e)) from None
        except StaleDirectory:
            continue
    raise BadProbeRequest("unknown_target", "the config was reloaded during the request: retry")


async def probe(request: web.Request) -> web.StreamResponse:
    """GET /probe?target=NAME&module=MODULE: one target's layers, probed now."""
    started = time.perf_counter()
    try:
        module, prober, layers, budget = await _parse(request)
    except BadProbeRequest as e:
        selfmetrics.BAD_REQUESTS.labels(e.reason).inc()
        return web.Response(status=400, text=f"{e}\n")

    results = await prober.probe(layers, budget)
    followed = request.app[FOLLOWERS].followed(prober.target.name)
    body = render(ProbeCollector(results, followed))  # generate_latest's text, far cheaper

    ok = True
    for r in results:
        if r.reason is not None:
            selfmetrics.LAYER_FAILURES.labels(r.layer, r.reason).inc()
        ok = ok and r.success
    _PROBES[module, ok].inc()
    _DURATIONS[module].observe(time.perf_counter() - started)
    # Written, not kept: aiohttp holds a connection's last response until its next request,
    # and a web.Response would hold its body; a thousand kept-alive scrapers, 30 MiB.
    response = _ProbeResponse(headers=_PROBE_HEADERS)
    response.content_length = len(body)
    await response.prepare(request)
    await response.write_eof(body)
    return response


class _ProbeResponse(web.StreamResponse):
    """A StreamResponse whose headers go out with its body, in one send() (as a
    web.Response's do): a StreamResponse sends them alone when prepared, a second system call
    for every probe, a tenth of a steady fleet's CPU."""

    _send_headers_immediately = False


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics: the exporter's own metrics, in the format the scraper asks for."""
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return web.Response(body=encode(REGISTRY), headers={"Content-Type": content_type})


async def reload(request: web.Request) -> web.Response:
    """POST /-/reload: load the config file again (as SIGHUP); 500 with why if refused."""
    problem = await request.app[STATE].reload()
    if problem is not None:
        return web.Response(status=500, text=f"config reload refused: {problem}\n")
    return web.Response(text="config reloaded\n")


async def healthz(_request: web.Request) -> web.Response:
    """GET /healthz: 200 while the process serves."""
    return web.Response(text="ok\n")
