#!/usr/bin/env python
"""Throughput benchmark of the embedded simulator (`blockpaca_nb.sim.Simulator`).

    python tests/benchmarks/bench_sim.py [--seconds N] [--warmup S] [--only orders|quotes]
                                         [--no-compression-variant]

A plain script (pytest does not collect `bench_*` files). It measures, in one run:

1. Order submissions answered per second with 50 concurrent keep-alive HTTP clients POSTing valid
   market orders to `/v2/orders`, with p50/p99 latency and errors; the same client against a
   trivial aiohttp server answering `{}` is the baseline (the client's and aiohttp's own ceiling on
   this machine), so the ratio shows what the simulator's order path costs. Plus: a block of 100
   orders fired at once over 100 warm connections, time until the last answer. Two clients, each
   against a fresh server: an aiohttp ClientSession (connector limit 50; 100 for the block) and raw
   keep-alive sockets sending pre-built requests (a few microseconds per request, so its figures
   show the server rather than the Python client). The simulator keeps every order it accepted, so
   each phase reports how many orders the server already held.
   The targets are measured on the `frictionless` profile (the instant broker); the same raw-client
   load on the default `paper` profile (Alpaca paper's rules: partial fills, guards) is reported beside
   them for information.
2. Quotes per second delivered to one market-data websocket subscriber (`quotes: ["*"]`), msgpack
   (as alpaca-py speaks it) and JSON, against the rate the simulator is configured to offer.

Every load generator runs in its own process (this script re-invoked with `--role ...`), so on a
small machine the simulator, the client and this coordinating process do not share one event loop.
The exit code is 0 even when a target is missed: this is a measurement; misses are printed as FAIL.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CLIENTS = 50
CLIENT_KINDS = ("aiohttp", "raw")  # aiohttp.ClientSession; raw keep-alive sockets (cheap client)
BLOCK = 100
BLOCK_REPEATS = 20
TARGET_ORDERS_PER_S = 2_000
TARGET_BLOCK_MS = 25.0
TARGET_QUOTES_PER_S = 20_000
QUOTES_PER_SECOND = 50.0  # per symbol, over the whole built-in universe
STARTING_CASH = 1e9
CHILD_TIMEOUT_MARGIN_S = 120.0


# ===================================================================== helpers (every process)
def _cpu_seconds(pid: int | None) -> float | None:
    """User+system CPU seconds used so far by a process (Linux /proc), or None if unknown."""
    if not pid:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def _timeline(times: list[float], origin: float, width: float = 1.0) -> list[int]:
    """How many events fell into each `width`-second slot after `origin`."""
    if not times:
        return []
    slots = [0] * (int((max(times) - origin) // width) + 1)
    for t in times:
        if t >= origin:
            slots[int((t - origin) // width)] += 1
    return slots


# ===================================================================== role: baseline server
def baseline_server() -> None:
    """A minimal aiohttp server (same runner settings as the simulator) that answers `{}`."""
    from aiohttp import web

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({})

    async def main() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", answer)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, reuse_address=True)
        await site.start()
        sys.stdout.write(json.dumps({"port": runner.addresses[0][1]}) + "\n")
        sys.stdout.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def watch() -> None:  # stop when the coordinating process closes our stdin (or dies)
            sys.stdin.read()
            loop.call_soon_threadsafe(stop.set)

        threading.Thread(target=watch, daemon=True).start()
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())


# ===================================================================== role: order load generator
class RawConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection that sends pre-built requests and reads `Content-Length`
    answers: a client that costs a few microseconds per request, so the figures show the server."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        if at < 0:
            waiter.set_exception(ConnectionError("answer without Content-Length"))
            return
        length = int(head[at + 17 :].split(b"\r\n", 1)[0])
        total = end + 4 + length
        if len(self.buffer) >= total:
            del self.buffer[:total]
            waiter.set_result(int(head[9:12]))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed"))

    async def request(self, data: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter


async def order_load(job: dict[str, Any]) -> dict[str, Any]:
    """Every order phase against one server; phases share the server, so later ones see more orders."""
    import aiohttp
    from yarl import URL

    url = URL(job["base"])
    headers = {
        "APCA-API-KEY-ID": job["key"],
        "APCA-API-SECRET-KEY": job["secret"],
        "Content-Type": "application/json",
    }
    raw_head = "".join(
        [f"POST /v2/orders HTTP/1.1\r\nHost: {url.host}:{url.port}\r\n"] + [f"{k}: {v}\r\n" for k, v in headers.items()]
    ).encode()
    counter = itertools.count()
    prefix = f"bench-{os.getpid()}-{time.time_ns()}"
    template = '{"symbol":"AAPL","qty":1,"side":"%s","type":"market","time_in_force":"day","client_order_id":"%s-%d"}'
    submitted = 0

    def body() -> bytes:
        nonlocal submitted
        n = next(counter)
        submitted += 1
        return (template % ("buy" if n % 2 == 0 else "sell", prefix, n)).encode()

    timeout = aiohttp.ClientTimeout(total=30)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=BLOCK, limit_per_host=BLOCK), timeout=timeout)
    loop = asyncio.get_running_loop()
    raw: list[RawConnection] = []
    for _ in range(BLOCK if job["client"] == "raw" else 0):
        _, proto = await loop.create_connection(RawConnection, url.host, url.port)
        raw.append(proto)

    async def post_aiohttp(_i: int) -> tuple[float, float, str]:
        """One order (buy and sell alternate) over the aiohttp session; (start, end, outcome)."""
        data = body()
        t0 = time.perf_counter()
        try:
            async with session.post(job["base"] + "/v2/orders", data=data, headers=headers) as resp:
                await resp.read()
                outcome = "ok" if resp.status == 200 else f"HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            outcome = type(err).__name__
        return t0, time.perf_counter(), outcome

    async def post_raw(i: int) -> tuple[float, float, str]:
        """The same order over raw keep-alive connection i."""
        data = body()
        request = raw_head + b"Content-Length: %d\r\n\r\n" % len(data) + data
        t0 = time.perf_counter()
        try:
            status = await raw[i].request(request)
            outcome = "ok" if status == 200 else f"HTTP {status}"
        except (ConnectionError, OSError, ValueError) as err:
            outcome = type(err).__name__
        return t0, time.perf_counter(), outcome

    posts = {"aiohttp": post_aiohttp, "raw": post_raw}

    async def blocks(client: str) -> dict[str, Any]:
        """BLOCK orders fired at once over warm connections, BLOCK_REPEATS times."""
        post = posts[client]
        before = submitted
        spans, errors = [], 0
        for _ in range(BLOCK_REPEATS):
            t0 = time.perf_counter()
            results = await asyncio.gather(*(post(i) for i in range(BLOCK)))
            spans.append((time.perf_counter() - t0) * 1000)
            errors += sum(r[2] != "ok" for r in results)
            await asyncio.sleep(0.03)
        return {
            "median_ms": statistics.median(spans),
            "best_ms": min(spans),
            "worst_ms": max(spans),
            "errors": errors,
            "orders_before": before,
        }

    async def sustained(client: str) -> dict[str, Any]:
        """CLIENTS concurrent clients, each with its own keep-alive connection, for the duration."""
        post = posts[client]
        before = submitted
        warm_end = time.perf_counter() + job["warmup"]
        end = warm_end + job["seconds"]
        records: list[tuple[float, float, str]] = []
        cpu: dict[str, float | None] = {}
        started = time.perf_counter()

        async def one_client(i: int) -> None:
            while time.perf_counter() < end:
                records.append(await post(i))

        async def mark_window() -> None:
            await asyncio.sleep(max(0.0, warm_end - time.perf_counter()))
            cpu["server0"], cpu["self0"] = _cpu_seconds(job.get("server_pid")), _own_cpu()

        await asyncio.gather(mark_window(), *(one_client(i) for i in range(CLIENTS)))
        server1, self1 = _cpu_seconds(job.get("server_pid")), _own_cpu()
        window = [r for r in records if warm_end <= r[1] < end]
        latencies = [(r[1] - r[0]) * 1000 for r in window]
        errors: dict[str, int] = {}
        for r in window:
            if r[2] != "ok":
                errors[r[2]] = errors.get(r[2], 0) + 1
        server0 = cpu.get("server0")
        return {
            "answered_per_s": len(window) / job["seconds"],
            "ok_per_s": (len(window) - sum(errors.values())) / job["seconds"],
            "answered": len(window),
            "p50_ms": _pct(latencies, 50),
            "p99_ms": _pct(latencies, 99),
            "max_ms": max(latencies) if latencies else None,
            "errors": errors,
            "per_second": _timeline([r[1] for r in records], started)[: int(job["warmup"] + job["seconds"])],
            "server_cpu": (server1 - server0) / job["seconds"] if server0 is not None and server1 else None,
            "client_cpu": (self1 - (cpu["self0"] or 0.0)) / job["seconds"],
            "orders_before": before,
        }

    client = job["client"]
    result: dict[str, Any] = {}
    try:
        for _ in range(3):  # open and warm every connection
            await asyncio.gather(*(posts[client](i) for i in range(BLOCK)))
        result["block_early"] = await blocks(client)
        result["load"] = await sustained(client)
        result["block_late"] = await blocks(client)
    finally:
        await session.close()
        for conn in raw:
            if conn.transport is not None:
                conn.transport.close()
    result["submitted"] = submitted
    return result


# ===================================================================== role: quote subscriber
async def quote_load(job: dict[str, Any]) -> dict[str, Any]:
    from datetime import datetime

    import msgpack
    from websockets.asyncio.client import connect

    use_msgpack = job["msgpack"]
    headers = {"Content-Type": "application/msgpack"} if use_msgpack else {}

    def decode(frame: bytes | str) -> Any:
        return msgpack.unpackb(frame) if use_msgpack else json.loads(frame)

    def encode(message: dict[str, Any]) -> bytes | str:
        return msgpack.packb(message) if use_msgpack else json.dumps(message)

    def stamp(t: Any) -> float:
        if use_msgpack:
            return t.to_unix()
        return datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()

    compression = "deflate" if job["compression"] else None
    async with connect(
        job["url"], additional_headers=headers, compression=compression, max_size=1 << 26, max_queue=1024
    ) as ws:
        hello = decode(await ws.recv())
        if hello != [{"T": "success", "msg": "connected"}]:
            raise RuntimeError(f"unexpected greeting {hello!r}")
        await ws.send(encode({"action": "auth", "key": job["key"], "secret": job["secret"]}))
        auth = decode(await ws.recv())
        if auth != [{"T": "success", "msg": "authenticated"}]:
            raise RuntimeError(f"authentication failed: {auth!r}")
        await ws.send(encode({"action": "subscribe", "quotes": ["*"]}))
        negotiated = ws.response.headers.get("Sec-WebSocket-Extensions") if ws.response else None

        started = time.perf_counter()
        warm_end = started + job["warmup"]
        end = warm_end + job["seconds"]
        quotes = frames = other = 0
        lags: list[float] = []
        arrivals: list[tuple[float, int]] = []
        cpu_server0 = cpu_self0 = None
        while True:
            remaining = end - time.perf_counter()
            if remaining <= 0:
                break
            try:
                frame = await asyncio.wait_for(ws.recv(), remaining)
            except TimeoutError:
                break
            now = time.perf_counter()
            messages = decode(frame)
            n = sum(1 for m in messages if m.get("T") == "q")
            if n:
                arrivals.append((now, n))
            if now < warm_end:
                continue
            if cpu_server0 is None:
                cpu_server0, cpu_self0 = _cpu_seconds(job.get("server_pid")), _own_cpu()
            frames += 1
            quotes += n
            other += len(messages) - n
            if n and "t" in messages[-1]:
                lags.append((time.time() - stamp(messages[-1]["t"])) * 1000)
        cpu_server1, cpu_self1 = _cpu_seconds(job.get("server_pid")), _own_cpu()
    per_second = [0] * int(job["warmup"] + job["seconds"])
    for t, n in arrivals:
        per_second[min(len(per_second) - 1, int(t - started))] += n
    # silence: the longest stretch without a quote, counting from the subscription to the end
    times = [started, *(t for t, _ in arrivals), end]
    silence = max(b - a for a, b in itertools.pairwise(times))
    return {
        "delivered_per_s": quotes / job["seconds"],
        "quotes": quotes,
        "frames_per_s": frames / job["seconds"],
        "quotes_per_frame": quotes / frames if frames else 0,
        "other_messages": other,
        "lag_p50_ms": _pct(lags, 50),
        "lag_p99_ms": _pct(lags, 99),
        "lag_last_ms": lags[-1] if lags else None,
        "per_second": per_second,
        "longest_silence_s": silence,
        "extensions": negotiated,
        "server_cpu": (cpu_server1 - cpu_server0) / job["seconds"] if cpu_server0 and cpu_server1 else None,
        "client_cpu": (cpu_self1 - cpu_self0) / job["seconds"] if cpu_self0 is not None else None,
    }


# ===================================================================== coordinating process
def _run_role(role: str, job: dict[str, Any]) -> dict[str, Any]:
    """Run one load generator in its own process; its JSON result comes back on stdout."""
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--role", role],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        # the job (with the secret) goes on stdin, never on the command line
        out, _ = process.communicate(
            json.dumps(job), timeout=3 * (job["warmup"] + job["seconds"]) + CHILD_TIMEOUT_MARGIN_S
        )
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)
    if process.returncode != 0 or not out.strip():
        raise RuntimeError(f"load generator {role!r} failed (exit code {process.returncode})")
    return json.loads(out.strip().splitlines()[-1])


class BaselineServer:
    """The trivial `{}` server, in a child process (this script with --role baseline-server)."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> BaselineServer:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--role", "baseline-server"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.__exit__()
            raise RuntimeError("the baseline server did not start")
        self.port = json.loads(line)["port"]
        return self

    def __exit__(self, *_exc: object) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        try:
            if process.stdin:
                process.stdin.close()
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        finally:
            if process.stdout:
                process.stdout.close()


def _server_pid(sim: Any) -> int | None:
    """The simulator child's pid, only to read its CPU time from /proc (best effort)."""
    process = getattr(sim, "_process", None)
    return getattr(process, "pid", None)


def bench_orders(args: argparse.Namespace) -> dict[str, Any]:
    """Each client kind against a fresh server, so both see the same history of orders."""
    from blockpaca_nb.sim import Simulator

    common = {"seconds": args.seconds, "warmup": args.warmup}
    results: dict[str, dict[str, Any]] = {"baseline": {}, "sim": {}, "paper": {}}
    for client in CLIENT_KINDS:
        with BaselineServer() as baseline:
            print(f"[orders] {client} client -> trivial aiohttp server on :{baseline.port} ...", flush=True)
            results["baseline"][client] = _run_role(
                "order-load",
                {
                    **common,
                    "client": client,
                    "base": f"http://127.0.0.1:{baseline.port}",
                    "key": "x",
                    "secret": "y",
                    "server_pid": baseline.process.pid if baseline.process else None,
                },
            )
        profiles = ("frictionless", "paper") if client == "raw" else ("frictionless",)
        for profile in profiles:
            with Simulator(starting_cash=STARTING_CASH, profile=profile) as sim:
                print(f"[orders] {client} client -> simulator ({profile}) on :{sim.port} ...", flush=True)
                results["sim" if profile == "frictionless" else "paper"][client] = _run_role(
                    "order-load",
                    {
                        **common,
                        "client": client,
                        "base": sim.urls["trading"],
                        "key": sim.api_key,
                        "secret": sim.secret_key,
                        "server_pid": _server_pid(sim),
                    },
                )
    return results


def bench_quotes(args: argparse.Namespace) -> dict[str, Any]:
    from blockpaca_nb.sim import Simulator

    results: dict[str, Any] = {}
    variants = [
        ("msgpack", True, True),  # what alpaca-py does: msgpack, permessage-deflate offered
        ("json", False, True),
    ]
    if args.no_compression_variant:
        variants.append(("msgpack, no deflate", True, False))
    # the unlimited data plan: a free plan refuses the '*' subscription measured here
    with Simulator(symbols=None, quotes_per_second=QUOTES_PER_SECOND, data_plan="sip") as sim:
        offered = len(sim.symbols) * QUOTES_PER_SECOND
        results["offered_per_s"] = offered
        results["symbols"] = len(sim.symbols)
        # one connection per key and endpoint is allowed: each variant uses its own feed path
        for (name, use_msgpack, compression), feed in zip(variants, ("iex", "sip", "test"), strict=False):
            print(f"[quotes] {name}: one subscriber to quotes ['*'], {offered:,.0f}/s offered ...", flush=True)
            results[name] = _run_role(
                "quote-load",
                {
                    "seconds": args.seconds,
                    "warmup": args.warmup,
                    "url": f"ws://127.0.0.1:{sim.port}/v2/{feed}",
                    "key": sim.api_key,
                    "secret": sim.secret_key,
                    "msgpack": use_msgpack,
                    "compression": compression,
                    "server_pid": _server_pid(sim),
                },
            )
            time.sleep(0.5)  # let the server drain what it still had queued for that subscriber
    return results


def _fmt(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:,.{digits}f}"


def report(orders: dict[str, Any] | None, quotes: dict[str, Any] | None) -> None:
    rows: list[tuple[str, str, str, str]] = []

    def verdict(ok: bool, info: bool = False) -> str:
        text = "pass" if ok else "FAIL"
        return f"({text}, info)" if info else text

    if orders:
        base, sim = orders["baseline"], orders["sim"]
        print(f"\n=== 1. order submissions to POST /v2/orders, {CLIENTS} concurrent keep-alive clients ===")
        for client in CLIENT_KINDS:
            print(f"{client} client (fresh server each):")
            for label, res in (("baseline `{}`", base[client]), ("simulator", sim[client])):
                load = res["load"]
                cpu = load["server_cpu"]
                print(
                    f"  {label:13s} {load['answered_per_s']:7,.0f} answered/s ({load['ok_per_s']:,.0f} ok)"
                    f"  p50 {_fmt(load['p50_ms'], 2)} ms  p99 {_fmt(load['p99_ms'], 2)} ms"
                    f"  max {_fmt(load['max_ms'])} ms  errors {load['errors'] or 0}"
                    f"  server CPU {_fmt(100 * cpu if cpu is not None else None, 0)}%"
                    f"  client CPU {_fmt(100 * load['client_cpu'], 0)}%"
                )
                print(
                    f"{'':16s}per second incl. warm-up: {load['per_second']}  ({load['orders_before']:,} orders before)"
                )
                for key, when in (("block_early", "early"), ("block_late", "after load")):
                    blk = res[key]
                    print(
                        f"{'':16s}block of {BLOCK} at once, {when} ({blk['orders_before']:,} orders before):"
                        f" median {blk['median_ms']:.1f} ms, best {blk['best_ms']:.1f},"
                        f" worst {blk['worst_ms']:.1f}, errors {blk['errors']}"
                    )
        for client in CLIENT_KINDS:
            s_load, b_load = sim[client]["load"], base[client]["load"]
            ratio = s_load["ok_per_s"] / b_load["answered_per_s"] if b_load["answered_per_s"] else 0.0
            rows.append(
                (
                    f"orders/s, {CLIENTS} clients ({client} client)",
                    f"{s_load['ok_per_s']:,.0f} ok/s",
                    f">= {TARGET_ORDERS_PER_S:,}",
                    verdict(s_load["ok_per_s"] >= TARGET_ORDERS_PER_S, info=client != "aiohttp"),
                )
            )
            rows.append(
                (
                    "  p50 / p99 latency, errors",
                    f"{_fmt(s_load['p50_ms'], 1)} / {_fmt(s_load['p99_ms'], 1)} ms",
                    "-",
                    f"errors {sum(s_load['errors'].values())}",
                )
            )
            rows.append(
                (
                    "  baseline `{}` server, same client",
                    f"{b_load['answered_per_s']:,.0f} req/s",
                    "-",
                    f"ratio {ratio:.2f}",
                )
            )
        for client, paper in orders["paper"].items():
            p_load = paper["load"]
            rows.append(
                (
                    f"orders/s, paper profile ({client} client)",
                    f"{p_load['ok_per_s']:,.0f} ok/s",
                    "-",
                    f"p99 {_fmt(p_load['p99_ms'], 1)} ms, block {paper['block_early']['median_ms']:.1f} ms (info)",
                )
            )
        for client in ("raw", "aiohttp"):
            for key, when in (("block_early", "early"), ("block_late", "after load")):
                blk, bblk = sim[client][key], base[client][key]
                rows.append(
                    (
                        f"block of {BLOCK}, last answer ({client}, {when})",
                        f"{blk['median_ms']:.1f} ms (worst {blk['worst_ms']:.0f})",
                        f"< {TARGET_BLOCK_MS:.0f} ms",
                        verdict(blk["median_ms"] < TARGET_BLOCK_MS and not blk["errors"], info=client != "raw"),
                    )
                )
                rows.append(
                    (
                        "  baseline `{}` server, same block",
                        f"{bblk['median_ms']:.1f} ms",
                        "-",
                        f"ratio {blk['median_ms'] / bblk['median_ms']:.1f}",
                    )
                )
    if quotes:
        offered = quotes["offered_per_s"]
        print(
            f"\n=== 2. quotes to one subscriber: {quotes['symbols']} symbols x {QUOTES_PER_SECOND:g}/s"
            f" = {offered:,.0f} quotes/s offered ==="
        )
        for name in ("msgpack", "json", "msgpack, no deflate"):
            res = quotes.get(name)
            if not res:
                continue
            print(
                f"{name:20s} {res['delivered_per_s']:9,.0f} delivered/s  ratio {res['delivered_per_s'] / offered:.2f}"
                f"  frames/s {res['frames_per_s']:.1f} ({res['quotes_per_frame']:.0f} quotes/frame)"
                f"  lag p50 {_fmt(res['lag_p50_ms'])} ms p99 {_fmt(res['lag_p99_ms'])} ms"
                f" last {_fmt(res['lag_last_ms'])} ms"
            )
            print(
                f"{'':20s} server CPU {_fmt(100 * res['server_cpu'] if res['server_cpu'] else None, 0)}%"
                f"  client CPU {_fmt(100 * res['client_cpu'] if res['client_cpu'] else None, 0)}%"
                f"  extension {res['extensions'] or 'none'}  per second: {res['per_second']}"
            )
            if res["longest_silence_s"] > 1.0:
                print(
                    f"{'':20s} WARNING: {res['longest_silence_s']:.1f} s without a single quote"
                    + (" (none at all after subscribing)" if not any(res["per_second"]) else "")
                    + ": the simulator's market loop stopped or stalled (see its log)"
                )
            info = name != "msgpack"
            rows.append(
                (
                    f"quotes/s delivered ({name})",
                    f"{res['delivered_per_s']:,.0f} of {offered:,.0f} ({res['delivered_per_s'] / offered:.2f})",
                    f">= {TARGET_QUOTES_PER_S:,}",
                    verdict(res["delivered_per_s"] >= TARGET_QUOTES_PER_S, info),
                )
            )
    widths = [max(len(r[i]) for r in [*rows, ("figure", "measured", "target", "result")]) for i in range(4)]
    print("\n=== summary ===")
    for row in [("figure", "measured", "target", "result"), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    failed = [r[0].strip() for r in rows if r[3] == "FAIL"]
    print(f"\n{'FAIL: ' + '; '.join(failed) if failed else 'all targets met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured duration per figure (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up before measuring (default 1)")
    parser.add_argument("--only", choices=("orders", "quotes"), help="run only one of the two benchmarks")
    parser.add_argument(
        "--no-compression-variant",
        action="store_true",
        help="also measure msgpack quotes with permessage-deflate not offered",
    )
    parser.add_argument("--role", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.role == "baseline-server":
        baseline_server()
        return
    if args.role in ("order-load", "quote-load"):
        job = json.loads(sys.stdin.read())
        runner = order_load if args.role == "order-load" else quote_load
        print(json.dumps(asyncio.run(runner(job))))
        return

    print(
        f"bench_sim: {args.warmup:g} s warm-up + {args.seconds:g} s measured per figure;"
        f" {os.cpu_count()} CPUs; python {sys.version.split()[0]};"
        f" load average {os.getloadavg()[0]:.2f} (other work on the machine skews every figure)",
        flush=True,
    )
    orders = bench_orders(args) if args.only in (None, "orders") else None
    quotes = bench_quotes(args) if args.only in (None, "quotes") else None
    report(orders, quotes)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
