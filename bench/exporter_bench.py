"""Benchmark of the exporter against Debian's prometheus-redis-exporter; prints figures.

Part 1, latency and CPU per scrape, in one run against one redis-server: this exporter's
`performance` and `all` modules and redis_exporter's /scrape, scraped in turn (round robin in
blocks of 25, one keep-alive HTTP connection each). CPU per scrape is the exporter process's
utime+stime (/proc/PID/stat) read around each block and summed. By default the redis-server is
a local one and the target has no `ssh` section (so `all` is PING + INFO ALL ...); with --ssh
(root) it is the test host's, and `all` also runs `systemctl is-active` over SSH (shown alone as
`systemd`). redis_exporter has no SSH layer: it is compared with both. It runs twice: on an
idle Redis, and on one with 200 distinct commands in its commandstats and keys in all 16
databases (`--redis idle` or `--redis busy` for one). Each case's series count is printed with
its ratio to redis_exporter's and the series it has more and fewer per sample name, and
`promtool check metrics` is run on our /probe output.

Part 2, many targets: one exporter process with 100 and then 1000 targets spread over a few
redis-servers, every target probed at once; wall time for all answers, the exporter's CPU,
and its RSS. Each module is probed twice: the first round opens connections (`all` runs
PING and INFO at once, so it opens each target's second one), the second reuses them.

Part 3 (`--part fleet`), a fleet as Prometheus scrapes it: N targets over 4 redis-servers
(each bound to 16 loopback addresses, so the targets are spread over 64 hosts), each target
probed once per --interval, the probes spread evenly over it, from one client process over
keep-alive HTTP, with Prometheus's scrape-timeout header. Ours (module=all, configured target
names) and then redis_exporter (/scrape?target=redis://HOST:PORT) in the same run, each for
one cold interval (just started: every connection still to open) and --cycles intervals of
steady state. Printed for each: p50, p99 and slowest answer, failed probes (not 200, no
redis_up 1, or no answer within the scrape timeout), the exporter's CPU in cores, and its RSS.

Everything listens on loopback and every loop is bounded. Not a test: it prints figures.

    .venv/bin/python bench/exporter_bench.py [--scrapes 1000] [--targets 100,1000] [--ssh]
    .venv/bin/python bench/exporter_bench.py --part fleet --fleet 1000,5000,10000
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import resource
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import free_port  # noqa: E402

REDIS_EXPORTER = "/usr/bin/prometheus-redis-exporter"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def rss_mib(pid: int) -> tuple[float, float]:
    """Current and peak resident set size, in MiB."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


def wait_port(port: int, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{what} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.05)
        else:
            return
    sys.exit(f"{what} did not listen on {port} within 30 s")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def start(stack: ExitStack, args: list[str], port: int, what: str) -> subprocess.Popen:
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stack.callback(stop, process)
    wait_port(port, process, what)
    return process


def start_redis(stack: ExitStack, workdir: Path) -> int:
    port = free_port()
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    args += ["--appendonly", "no", "--daemonize", "no", "--dir", str(workdir)]
    start(stack, args, port, "redis-server")
    return port


def start_exporter(stack: ExitStack, workdir: Path, targets: list[dict]) -> tuple[int, int]:
    config = workdir / f"exporter-{len(targets)}.yml"
    config.write_text(yaml.safe_dump({"targets": targets}))
    port = free_port()
    # This checkout's code, whichever virtualenv runs the bench.
    args = [sys.executable, "-m", "redis_autoheal.cli", "exporter", "--config", str(config)]
    args += ["--listen", f"127.0.0.1:{port}", "--log-level", "error"]
    os.environ["PYTHONPATH"] = str(ROOT)
    return port, start(stack, args, port, "redis-autoheal exporter").pid


# Zero-argument commands a busy Redis must not be sent (they act); the others get no
# arguments, so Redis refuses them before running (rejected_calls) yet lists them in
# commandstats: 200 distinct commands at no risk.
def make_busy(port: int, commands: int = 200, databases: int = 16) -> int:
    """Fill commandstats with `commands` distinct commands and every database with keys."""
    import redis  # noqa: PLC0415 -- the bench's only direct Redis client

    client = redis.Redis(port=port)
    seen = 0
    for name, details in sorted(client.command().items()):  # redis-py: name -> details
        arity = int(details["arity"])
        if arity in (1, -1) or seen >= commands:
            continue  # takes no arguments: it would run
        try:
            client.execute_command(name)
        except redis.ResponseError:
            seen += 1
    for db in range(databases):
        client.execute_command("SELECT", db)
        client.mset({f"key:{i}": i for i in range(100)})
        for i in range(0, 100, 3):
            client.expire(f"key:{i}", 3600)
    client.close()
    return seen


def series_count(body: bytes) -> int:
    return sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))


def series_per_name(body: bytes) -> Counter[str]:
    """How many series each sample name has (`redis_db_keys`, `..._sum`, ...)."""
    lines = (line for line in body.splitlines() if line and not line.startswith(b"#"))
    return Counter(line.split(b"{", 1)[0].split(b" ", 1)[0].decode() for line in lines)


def series_apart(ours: bytes, theirs: bytes) -> str:
    """The series one page has more, and fewer, than the other's, per sample name."""
    mine, other = series_per_name(ours), series_per_name(theirs)

    def listed(counts: Counter[str]) -> str:
        names = (f"{n}" if k == 1 else f"{n} x{k}" for n, k in sorted(counts.items()))
        return f"{counts.total()} ({', '.join(names) or 'none'})"

    return f"{listed(mine - other)} more, {listed(other - mine)} fewer"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def promtool_check(body: bytes) -> None:
    """`promtool check metrics` on our output: its complaints, redis_exporter's names apart."""
    ran = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, check=False
    )
    problems = [line for line in ran.stderr.decode().splitlines() if line.strip()]
    from exporter.infometrics import COUNTERS, GAUGES  # noqa: PLC0415

    theirs = {f"redis_{n}" for n in (*GAUGES.values(), *COUNTERS.values())}
    theirs |= {"redis_latest_fork_seconds"}  # renamed from latest_fork_usec by redis_exporter
    ours = [p for p in problems if p.split()[0] not in theirs]
    print(
        f"promtool check metrics on /probe: exit {ran.returncode}, {len(problems)} remarks, "
        f"{len(problems) - len(ours)} on redis_exporter's own names, {len(ours)} on others"
    )
    for line in ours:
        print("   ", line)


def part1(stack: ExitStack, workdir: Path, scrapes: int, target: dict) -> None:  # noqa: C901
    redis_host, redis_port = target["redis"]["host"], target["redis"]["port"]
    ours_port, ours_pid = start_exporter(stack, workdir, [target])
    theirs_port = free_port()
    theirs = start(
        stack,
        [REDIS_EXPORTER, f"--web.listen-address=127.0.0.1:{theirs_port}"],
        theirs_port,
        "prometheus-redis-exporter",
    )
    cases = [
        ("ours performance", ours_port, ours_pid, "/probe?target=redis&module=performance"),
        ("ours all", ours_port, ours_pid, "/probe?target=redis&module=all"),
        *(
            [("ours systemd", ours_port, ours_pid, "/probe?target=redis&module=systemd")]
            if "ssh" in target
            else []
        ),
        (
            "redis_exporter /scrape",
            theirs_port,
            theirs.pid,
            f"/scrape?target=redis://{redis_host}:{redis_port}",
        ),
    ]
    connections = [
        http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _, port, _, _ in cases
    ]

    def scrape(i: int) -> float:
        conn, path = connections[i], cases[i][3]
        started = time.perf_counter()
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - started
        if (
            response.status != 200
            or (b"redis_connected_clients" not in body and b"redis_ssh_up 1" not in body)
            or (b'redis_probe_success{layer="systemd"} 0' in body and "ssh" in target)
        ):
            sys.exit(f"{cases[i][0]}: answered {response.status}: {body[:200]!r}")
        return elapsed

    for _ in range(50):  # warm-up: connections open, code paths hot
        for i in range(len(cases)):
            scrape(i)
    bodies = []
    for i in range(len(cases)):
        conn, path = connections[i], cases[i][3]
        conn.request("GET", path)
        body = conn.getresponse().read()
        bodies.append(body)
        if i == 1:
            promtool_check(body)
    latencies: list[list[float]] = [[] for _ in cases]
    cpu: list[float] = [0.0] * len(cases)
    deadline = time.monotonic() + 300
    block = 25  # scrapes of one case between two CPU readings; the cases take turns
    for _ in range(max(1, scrapes // block)):
        for i, (_, _, pid, _) in enumerate(cases):
            before = cpu_seconds(pid)
            latencies[i] += [scrape(i) for _ in range(block)]
            cpu[i] += cpu_seconds(pid) - before
        if time.monotonic() > deadline:
            print("stopped after 300 s")
            break

    where = (
        "the test host (all: PING, INFO and is-active over SSH)"
        if "ssh" in target
        else ("a local redis-server (no ssh section: all = PING and INFO)")
    )
    print(f"\nPart 1: {len(latencies[0])} scrapes of each, in turn, against {where}")
    print(f"{'':26}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'CPU ms/scrape':>15}{'series':>8}")
    rows = []
    sizes = [series_count(body) for body in bodies]
    for (name, *_), lat, seconds, size in zip(cases, latencies, cpu, sizes, strict=True):
        row = (
            percentile(lat, 0.5) * 1e3,
            percentile(lat, 0.99) * 1e3,
            statistics.fmean(lat) * 1e3,
            seconds / len(lat) * 1e3,
        )
        rows.append(row)
        print(f"{name:26}{row[0]:9.3f}{row[1]:9.3f}{row[2]:9.3f}{row[3]:15.3f}{size:8}")
    base = rows[-1]
    for (name, *_), row in zip(cases[:-1], rows[:-1], strict=True):
        print(
            f"{name} / redis_exporter: p50 {row[0] / base[0]:.2f}, p99 {row[1] / base[1]:.2f},"
            f" CPU per scrape {row[3] / base[3]:.2f}   (goal: p50 and CPU <= 0.50)"
        )
    for (name, *_), size, body in zip(cases[:-1], sizes[:-1], bodies[:-1], strict=True):
        print(f"{name} series / redis_exporter's: {size / sizes[-1]:.2f}")
        print(f"    per sample name: {series_apart(body, bodies[-1])}")
    print(f"(CPU: utime+stime in 1/{CLOCK_TICKS} s ticks, read around each block of 25 scrapes)")
    for c in connections:
        c.close()


async def probe_all(port: int, names: list[str], module: str) -> tuple[float, int, float]:
    """Probe every target at once: wall time, answers that were 200, slowest answer."""
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(name: str) -> tuple[int, float]:
            started = time.perf_counter()
            url = f"http://127.0.0.1:{port}/probe?target={name}&module={module}"
            async with session.get(url) as response:
                body = await response.read()
            ok = response.status == 200 and b"redis_probe_success" in body
            return int(ok), time.perf_counter() - started

        started = time.perf_counter()
        results = await asyncio.gather(*(one(n) for n in names))
        wall = time.perf_counter() - started
    return wall, sum(ok for ok, _ in results), max(t for _, t in results)


def part2(stack: ExitStack, workdir: Path, counts: list[int], servers: int) -> None:
    ports = [start_redis(stack, workdir) for _ in range(servers)]
    print(f"\nPart 2: one exporter, N targets over {servers} redis-servers, all probed at once")
    print(
        f"{'N':>5} {'module':12} {'round':6}{'wall s':>8}{'slowest s':>10}{'200s':>6}"
        f"{'CPU s':>7}{'RSS MiB':>9}{'peak MiB':>9}"
    )
    for n in counts:
        targets: list[dict[str, Any]] = [
            {"name": f"t{i}", "redis": {"host": "127.0.0.1", "port": ports[i % servers]}}
            for i in range(n)
        ]
        with ExitStack() as own:
            port, pid = start_exporter(own, workdir, targets)
            idle = rss_mib(pid)[0]
            names = [t["name"] for t in targets]
            for module in ("performance", "all"):
                for round_name in ("first", "second"):
                    before = cpu_seconds(pid)
                    wall, ok, slowest = asyncio.run(probe_all(port, names, module))
                    used = cpu_seconds(pid) - before
                    rss, peak = rss_mib(pid)
                    print(
                        f"{n:5} {module:12} {round_name:6}{wall:8.3f}{slowest:10.3f}{ok:6}"
                        f"{used:7.2f}{rss:9.1f}{peak:9.1f}"
                    )
            print(f"{n:5} (RSS when idle, before the first probe: {idle:.1f} MiB)")


FLEET_SERVERS = 4
FLEET_ADDRESSES = 16  # loopback addresses each redis-server binds: redis-server's maximum
SCRAPE_TIMEOUT = 10.0  # Prometheus's default scrape_timeout


def start_fleet_redis(stack: ExitStack, workdir: Path, index: int) -> tuple[int, list[str]]:
    """A redis-server bound to 16 loopback addresses of its own (127.0.INDEX+1.1-16)."""
    port = free_port()
    hosts = [f"127.0.{index + 1}.{a}" for a in range(1, FLEET_ADDRESSES + 1)]
    args = ["redis-server", "--port", str(port), "--bind", *hosts, "--save", ""]
    args += ["--appendonly", "no", "--daemonize", "no", "--dir", str(workdir)]
    args += ["--maxclients", "20000"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stack.callback(stop, process)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection((hosts[0], port), timeout=1).close()
        except OSError:
            time.sleep(0.05)
        else:
            return port, hosts
    sys.exit(f"redis-server did not listen on {hosts[0]}:{port}")


class FleetRun:
    """One exporter scraped as Prometheus scrapes a fleet: each path once per interval."""

    def __init__(self, port: int, pid: int, paths: list[str], interval: float) -> None:
        self.port, self.pid, self.paths, self.interval = port, pid, paths, interval

    async def run(self, cycles: int) -> list[tuple[list[float], int, float, float]]:
        """Per interval: latencies, failures, CPU seconds of the exporter, its RSS at the end."""
        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT)
        headers = {"X-Prometheus-Scrape-Timeout-Seconds": str(SCRAPE_TIMEOUT)}
        n = len(self.paths)
        pending: set[asyncio.Task[None]] = set()
        out = []
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            base = f"http://127.0.0.1:{self.port}"

            async def one(path: str, latencies: list[float], failed: list[int]) -> None:
                started = time.perf_counter()
                try:
                    async with session.get(base + path, headers=headers) as response:
                        body = await response.read()
                    ok = response.status == 200 and b"\nredis_up 1" in body
                except (TimeoutError, aiohttp.ClientError):
                    ok = False
                latencies.append(time.perf_counter() - started)
                if not ok:
                    failed[0] += 1

            loop = asyncio.get_running_loop()
            for _ in range(cycles + 1):
                latencies: list[float] = []
                failed = [0]
                cpu_before = cpu_seconds(self.pid)
                start = loop.time()
                for i, path in enumerate(self.paths):
                    due = start + self.interval * i / n
                    delay = due - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    task = asyncio.ensure_future(one(path, latencies, failed))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                rest = start + self.interval - loop.time()
                if rest > 0:
                    await asyncio.sleep(rest)
                cpu = cpu_seconds(self.pid) - cpu_before
                out.append((latencies, failed[0], cpu, rss_mib(self.pid)[0]))
            await asyncio.gather(*pending)
        return out


def fleet(  # noqa: PLR0913, PLR0917 -- the command line's settings
    stack: ExitStack,
    workdir: Path,
    counts: list[int],
    interval: float,
    cycles: int,
    exporters: tuple[str, ...] = ("ours", "redis_exporter"),
) -> None:
    servers = [start_fleet_redis(stack, workdir, s) for s in range(FLEET_SERVERS)]
    print(
        f"\nPart 3: a fleet, each target probed once per {interval:g} s, spread evenly; "
        f"{FLEET_SERVERS} redis-servers x {FLEET_ADDRESSES} loopback addresses; "
        f"1 cold interval then {cycles} of steady state; scrape timeout {SCRAPE_TIMEOUT:g} s"
    )
    print(
        f"{'N':>6} {'exporter':15}{'phase':8}{'probes':>7}{'failed':>7}{'p50 ms':>9}"
        f"{'p99 ms':>9}{'max ms':>9}{'cores':>7}{'RSS MiB':>9}{'peak MiB':>9}"
    )
    for n in counts:
        where = [
            (
                servers[i % FLEET_SERVERS][1][(i // FLEET_SERVERS) % FLEET_ADDRESSES],
                servers[i % FLEET_SERVERS][0],
            )
            for i in range(n)
        ]
        targets = [
            {"name": f"t{i}", "redis": {"host": host, "port": port}}
            for i, (host, port) in enumerate(where)
        ]
        ours = [f"/probe?target=t{i}&module=all" for i in range(n)]
        theirs = [f"/scrape?target=redis://{host}:{port}" for host, port in where]
        for name, paths in (("ours", ours), ("redis_exporter", theirs)):
            if name not in exporters:
                continue
            with ExitStack() as own:
                if name == "ours":
                    port, pid = start_exporter(own, workdir, targets)
                else:
                    port = free_port()
                    pid = start(
                        own,
                        [REDIS_EXPORTER, f"--web.listen-address=127.0.0.1:{port}"],
                        port,
                        "prometheus-redis-exporter",
                    ).pid
                intervals = asyncio.run(FleetRun(port, pid, paths, interval).run(cycles))
                peak = rss_mib(pid)[1]
            cold, steady = intervals[0], intervals[1:]
            lat = [x for latencies, *_ in steady for x in latencies]
            rows = [("cold", cold[0], cold[1], cold[2] / interval, cold[3])]
            rows.append(
                (
                    "steady",
                    lat,
                    sum(f for _, f, _, _ in steady),
                    sum(c for *_, c, _ in steady) / (interval * len(steady)),
                    steady[-1][3],
                )
            )
            for phase, latencies, failed, cores, rss in rows:
                print(
                    f"{n:6} {name:15}{phase:8}{len(latencies):7}{failed:7}"
                    f"{percentile(latencies, 0.5) * 1e3:9.1f}"
                    f"{percentile(latencies, 0.99) * 1e3:9.1f}{max(latencies) * 1e3:9.1f}"
                    f"{cores:7.2f}{rss:9.1f}{peak if phase == 'steady' else float('nan'):9.1f}",
                    flush=True,
                )


def test_host_target(stack: ExitStack) -> dict:
    """A target on a new test host (VM3 in a box, root only), torn down at the end."""
    sys.path.insert(0, str(ROOT))
    from testhost import TestHost  # noqa: PLC0415 -- only with --ssh, and only as root

    host = TestHost.build()
    stack.callback(host.teardown)
    return host.target("redis")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scrapes", type=int, default=1000, help="part 1 scrapes of each")
    parser.add_argument("--targets", default="100,1000", help="part 2 target counts")
    parser.add_argument("--servers", type=int, default=4, help="part 2 redis-servers")
    parser.add_argument("--part", choices=("1", "2", "both", "fleet"), default="both")
    parser.add_argument("--fleet", default="1000,5000,10000", help="part 3 target counts")
    parser.add_argument("--interval", type=float, default=30.0, help="part 3 scrape interval")
    parser.add_argument("--cycles", type=int, default=2, help="part 3 steady intervals")
    parser.add_argument(
        "--exporters", default="ours,redis_exporter", help="part 3: which exporters, in order"
    )
    parser.add_argument(
        "--redis", choices=("idle", "busy", "both"), default="both", help="part 1's Redis"
    )
    parser.add_argument(
        "--ssh",
        action="store_true",
        help="part 1 against the test host (root): `all` then runs is-active over real SSH",
    )
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 1000 client sockets at once
    print("command:", shlex.join([sys.executable, *sys.argv]))
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="exporter-bench-") as tmp:
        workdir = Path(tmp)
        if args.part in ("1", "both"):
            for kind in ("idle", "busy"):
                if args.redis not in (kind, "both"):
                    continue
                if kind == "busy" and args.ssh:
                    print("\n(--ssh: the test host's Redis is not filled; idle only)")
                    continue
                target: dict[str, Any] = {
                    "name": "redis",
                    "redis": {"host": "127.0.0.1", "port": 0},
                }
                if args.ssh:
                    target = test_host_target(stack)
                else:
                    target["redis"]["port"] = start_redis(stack, workdir)
                if kind == "busy":
                    count = make_busy(target["redis"]["port"])
                    print(f"\nbusy Redis: {count} distinct commands in commandstats, 16 dbs")
                else:
                    print("\nidle Redis")
                part1(stack, workdir, args.scrapes, target)
        if args.part == "fleet":
            fleet(
                stack,
                workdir,
                [int(n) for n in args.fleet.split(",")],
                args.interval,
                args.cycles,
                tuple(args.exporters.split(",")),
            )
        if args.part in ("2", "both"):
            part2(stack, workdir, [int(n) for n in args.targets.split(",")], args.servers)


if __name__ == "__main__":
    main()
