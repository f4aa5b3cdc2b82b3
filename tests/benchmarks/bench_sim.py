#!/usr/bin/env python
"""Throughput benchmark of the embedded simulator (`blockpaca_nb.sim.Simulator`).

    python tests/benchmarks/bench_sim.py [--seconds N] [--warmup S]

A plain script (pytest does not collect `bench_*` files). It measures, in one run:

1. Order submissions answered per second with 50 concurrent keep-alive HTTP clients POSTing valid
   market orders to `/v2/orders`, with p50/p99 latency and errors; the same client against a
   trivial aiohttp server answering `{}` is the baseline (the client's and aiohttp's own ceiling on
   this machine), so the ratio shows what the simulator's order path costs. Plus: a block of 100
   orders fired at once over 100 warm connections, time until the last answer.
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
BLOCK = 100
BLOCK_REPEATS = 20
TARGET_ORDERS_PER_S = 2_000
TARGET_BLOCK_MS = 25.0
TARGET_QUOTES_PER_S = 20_000
QUOTES_PER_SECOND = 50.0  # per symbol, over the whole built-in universe
STARTING_CASH = 1e9
CHILD_TIMEOUT_MARGIN_S = 90.0


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
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


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
async def order_load(job: dict[str, Any]) -> dict[str, Any]:
    import aiohttp

    url = job["base"] + "/v2/orders"
    headers = {
        "APCA-API-KEY-ID": job["key"],
        "APCA-API-SECRET-KEY": job["secret"],
        "Content-Type": "application/json",
    }
    counter = itertools.count()
    prefix = f"bench-{os.getpid()}-{time.time_ns()}"
    template = (
        '{"symbol":"AAPL","qty":1,"side":"%s","type":"market","time_in_force":"day",'
        '"client_order_id":"%s-%d"}'
    )
    submitted = 0

    async def post(session: aiohttp.ClientSession) -> tuple[float, float, str]:
        """One order (buy and sell alternate); returns (start, end, outcome)."""
        nonlocal submitted
        n = next(counter)
        body = (template % ("buy" if n % 2 == 0 else "sell", prefix, n)).encode()
        submitted += 1
        t0 = time.perf_counter()
        try:
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                outcome = "ok" if resp.status == 200 else f"HTTP {resp.status}"
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as err:
            outcome = type(err).__name__
        return t0, time.perf_counter(), outcome

    async def blocks(session: aiohttp.ClientSession) -> dict[str, Any]:
        """BLOCK orders fired at once over warm connections, BLOCK_REPEATS times."""
        spans, errors = [], 0
        for _ in range(BLOCK_REPEATS):
            t0 = time.perf_counter()
            results = await asyncio.gather(*(post(session) for _ in range(BLOCK)))
            spans.append((time.perf_counter() - t0) * 1000)
            errors += sum(r[2] != "ok" for r in results)
            await asyncio.sleep(0.03)
        return {
            "median_ms": statistics.median(spans),
            "best_ms": min(spans),
            "worst_ms": max(spans),
            "errors": errors,
        }

    timeout = aiohttp.ClientTimeout(total=30)
    result: dict[str, Any] = {}
    # --- the block of 100: a pool of 100 connections, warmed up first
    block_connector = aiohttp.TCPConnector(limit=BLOCK, limit_per_host=BLOCK)
    async with aiohttp.ClientSession(connector=block_connector, timeout=timeout) as block_session:
        for _ in range(3):
            await asyncio.gather(*(post(block_session) for _ in range(BLOCK)))
        result["block_early"] = blocks_early = await blocks(block_session)
        blocks_early["orders_before"] = submitted - BLOCK * BLOCK_REPEATS

        # --- sustained load: 50 concurrent clients over a pool of 50 keep-alive connections
        connector = aiohttp.TCPConnector(limit=CLIENTS, limit_per_host=CLIENTS)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            warm_end = time.perf_counter() + job["warmup"]
            end = warm_end + job["seconds"]
            records: list[tuple[float, float, str]] = []
            cpu_server0 = cpu_self0 = 0.0
            started = time.perf_counter()

            async def client() -> None:
                while time.perf_counter() < end:
                    records.append(await post(session))

            async def mark_window() -> None:
                nonlocal cpu_server0, cpu_self0
                await asyncio.sleep(max(0.0, warm_end - time.perf_counter()))
                cpu_server0, cpu_self0 = _cpu_seconds(job.get("server_pid")) or 0.0, _own_cpu()

            await asyncio.gather(mark_window(), *(client() for _ in range(CLIENTS)))
            cpu_server1, cpu_self1 = _cpu_seconds(job.get("server_pid")), _own_cpu()
            window = [r for r in records if warm_end <= r[1] < end]
            latencies = [(r[1] - r[0]) * 1000 for r in window]
            errors: dict[str, int] = {}
            for r in window:
                if r[2] != "ok":
                    errors[r[2]] = errors.get(r[2], 0) + 1
            ok = len(window) - sum(errors.values())
            result["load"] = {
                "answered_per_s": len(window) / job["seconds"],
                "ok_per_s": ok / job["seconds"],
                "answered": len(window),
                "p50_ms": _pct(latencies, 50),
                "p99_ms": _pct(latencies, 99),
                "max_ms": max(latencies) if latencies else None,
                "errors": errors,
                "per_second": _timeline([r[1] for r in records], started),
                "server_cpu": (cpu_server1 - cpu_server0) / job["seconds"] if cpu_server1 else None,
                "client_cpu": (cpu_self1 - cpu_self0) / job["seconds"],
            }

        result["block_late"] = blocks_late = await blocks(block_session)
        blocks_late["orders_before"] = submitted - BLOCK * BLOCK_REPEATS
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
    per_second = [0] * (int((job["warmup"] + job["seconds"]) // 1) + 1)
    for t, n in arrivals:
        per_second[min(len(per_second) - 1, int(t - started))] += n
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
        "extensions": negotiated,
        "server_cpu": (cpu_server1 - cpu_server0) / job["seconds"] if cpu_server0 and cpu_server1 else None,
        "client_cpu": (_own_cpu() - cpu_self0) / job["seconds"] if cpu_self0 is not None else None,
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
            json.dumps(job), timeout=job["warmup"] + job["seconds"] + CHILD_TIMEOUT_MARGIN_S
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
    from blockpaca_nb.sim import Simulator

    common = {"seconds": args.seconds, "warmup": args.warmup}
    with BaselineServer() as baseline:
        print(f"[orders] baseline: trivial aiohttp server on :{baseline.port} ...", flush=True)
        base = _run_role(
            "order-load",
            {
                **common,
                "base": f"http://127.0.0.1:{baseline.port}",
                "key": "x",
                "secret": "y",
                "server_pid": baseline.process.pid if baseline.process else None,
            },
        )
    with Simulator(starting_cash=STARTING_CASH) as sim:
        print(f"[orders] simulator on :{sim.port} ...", flush=True)
        simres = _run_role(
            "order-load",
            {
                **common,
                "base": sim.urls["trading"],
                "key": sim.api_key,
                "secret": sim.secret_key,
                "server_pid": _server_pid(sim),
            },
        )
    return {"baseline": base, "sim": simres}


def bench_quotes(args: argparse.Namespace) -> dict[str, Any]:
    from blockpaca_nb.sim import Simulator

    results: dict[str, Any] = {}
    variants = [
        ("msgpack", True, True),  # what alpaca-py does: msgpack, permessage-deflate offered
        ("json", False, True),
    ]
    if args.no_compression_variant:
        variants.append(("msgpack, no deflate", True, False))
    with Simulator(symbols=None, quotes_per_second=QUOTES_PER_SECOND) as sim:
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
        print("\n=== 1. order submissions, 50 concurrent keep-alive clients ===")
        for label, res in (("baseline `{}` server", base), ("simulator /v2/orders", sim)):
            load = res["load"]
            print(
                f"{label:22s} {load['answered_per_s']:9,.0f} answered/s ({load['ok_per_s']:,.0f} ok/s)"
                f"  p50 {_fmt(load['p50_ms'], 2)} ms  p99 {_fmt(load['p99_ms'], 2)} ms"
                f"  max {_fmt(load['max_ms'], 1)} ms  errors {load['errors'] or 0}"
            )
            print(
                f"{'':22s} server CPU {_fmt(100 * load['server_cpu'] if load['server_cpu'] else None, 0)}%"
                f"  client CPU {_fmt(100 * load['client_cpu'], 0)}%"
                f"  per second (incl. warm-up): {load['per_second']}"
            )
            for key, when in (("block_early", "early"), ("block_late", "after load")):
                blk = res[key]
                print(
                    f"{'':22s} block of {BLOCK} at once ({when}, {blk['orders_before']:,} orders before):"
                    f" median {blk['median_ms']:.1f} ms, best {blk['best_ms']:.1f}, worst"
                    f" {blk['worst_ms']:.1f}, errors {blk['errors']}"
                )
        ratio = sim["load"]["answered_per_s"] / base["load"]["answered_per_s"]
        print(
            f"ratio simulator/baseline: {ratio:.2f}  (latency p50 x"
            f"{(sim['load']['p50_ms'] or 0) / (base['load']['p50_ms'] or 1):.1f})"
        )
        rows.append(
            (
                "orders/s answered (50 clients)",
                f"{sim['load']['ok_per_s']:,.0f} ok/s",
                f">= {TARGET_ORDERS_PER_S:,}",
                verdict(sim["load"]["ok_per_s"] >= TARGET_ORDERS_PER_S),
            )
        )
        rows.append(
            (
                "  baseline `{}` server, same client",
                f"{base['load']['answered_per_s']:,.0f} req/s",
                "-",
                f"ratio {ratio:.2f}",
            )
        )
        rows.append(
            (
                "  order p50 / p99 latency",
                f"{_fmt(sim['load']['p50_ms'], 2)} / {_fmt(sim['load']['p99_ms'], 2)} ms",
                "-",
                f"errors {sum(sim['load']['errors'].values())}",
            )
        )
        for key, when in (("block_early", "early"), ("block_late", "after load")):
            blk = sim[key]
            rows.append(
                (
                    f"block of {BLOCK} orders, last answer ({when})",
                    f"{blk['median_ms']:.1f} ms (worst {blk['worst_ms']:.1f})",
                    f"< {TARGET_BLOCK_MS:.0f} ms",
                    verdict(blk["median_ms"] < TARGET_BLOCK_MS and not blk["errors"]),
                )
            )
            rows.append(
                (
                    "  baseline `{}` server, same block",
                    f"{base[key]['median_ms']:.1f} ms",
                    "-",
                    f"ratio {blk['median_ms'] / base[key]['median_ms']:.1f}",
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
            info = name != "msgpack"
            rows.append(
                (
                    f"quotes/s delivered ({name})",
                    f"{res['delivered_per_s']:,.0f} of {offered:,.0f} ({res['delivered_per_s'] / offered:.2f})",
                    f">= {TARGET_QUOTES_PER_S:,}",
                    verdict(res["delivered_per_s"] >= TARGET_QUOTES_PER_S, info),
                )
            )
    widths = [max(len(r[i]) for r in rows + [("figure", "measured", "target", "result")]) for i in range(4)]
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
        f" {os.cpu_count()} CPUs; python {sys.version.split()[0]}",
        flush=True,
    )
    orders = bench_orders(args) if args.only in (None, "orders") else None
    quotes = bench_quotes(args) if args.only in (None, "quotes") else None
    report(orders, quotes)


if __name__ == "__main__":
    main()
