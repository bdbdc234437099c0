"""The gateway alone under load from a separate process (issue 16, item 5): one-sentence requests/s at max and the
latency it adds at fixed rates, against a zero-latency fake engine on loopback.

- **max**: ``wrk`` (Debian's, a Lua POST script: benchmarks/gateway_load.lua) with ``--connections`` keep-alive
  connections; every sentence differs, every answer is checked (200 and the fake engine's ``[de]``).
- **fixed rates** (100 and 1,000 req/s by default): this module's own open-loop generator (``openloop``: uvloop,
  raw HTTP/1.1 on a pool of keep-alive connections) in a separate process. Requests are sent on a schedule, not
  when the previous one returned, and latency is taken from the send (``p50/p99``) and from the scheduled time
  (``sched p99``: a stalled server cannot hide behind a waiting client).
- **raw stack**: the same uvicorn (the gateway's run_server: httptools, uvloop, its header-guarding protocol) with
  a trivial FastAPI endpoint (pydantic model in, pydantic model out), so the table shows what the framework costs.
- **HTTP-engine workers**: N gateway processes in HTTP-engine mode sharing one port (SO_REUSEPORT: ``serve`` has no
  ``--workers``) in front of a fast fake OpenAI completions server process.

The gateway is pinned to core 0 and the load generator to core 1 (``taskset``), so "per gateway process" means one
core (``--no-pin`` turns it off; the worker runs are never pinned). Every measurement must hold the machine::

    git worktree add --detach /tmp/gl-before <commit>       # the server code of another commit, for "before"
    flock /tmp/batchmt-engine.lock python -m benchmarks.gateway_load --label before --server-tree /tmp/gl-before \
        --profile gateway,http-1w                           # ~8 min
    flock /tmp/batchmt-engine.lock python -m benchmarks.gateway_load --label after --profile gateway,http-1w

Runs merge into results/gateway-load/report.json under ``--label`` (a later run of a label replaces it, a run of
some ``--cases`` keeps the label's others); report.md is written from all labels, with after/before ratios, and
with notes.md (written by hand) at the top; ``--render`` writes it again without running anything. py-spy's
collapsed stacks go to profiles/ (gzipped); the processes' logs and stores to a temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import gzip
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
from pydantic import BaseModel

REPO = Path(__file__).resolve().parent.parent
LUA = Path(__file__).with_name("gateway_load.lua")
OUT = REPO / "results" / "gateway-load"
#: the checkout whose server code the gateway processes run (``--server-tree``: e.g. a worktree of the commit before
#: an optimisation); the benchmark itself always runs from this repository
SERVER_TREE = REPO
CASES = ("raw", "gateway", "gateway-nowait", "http-1w", "http-2w")
CASE_NOTES = {
    "raw": "raw stack: uvicorn (the gateway's run_server config) + a trivial FastAPI endpoint, pydantic in/out",
    "gateway": "gateway, fake engine, default settings (batch window --max-wait-ms 5)",
    "gateway-nowait": "gateway, fake engine, --max-wait-ms 0 (no batch window)",
    "http-1w": "gateway in HTTP-engine mode, 1 process, fake OpenAI server process; nothing pinned",
    "http-2w": "gateway in HTTP-engine mode, 2 processes on one port (SO_REUSEPORT), fake OpenAI server; not pinned",
}


# ---------------------------------------------------------------------------------------------------- pure helpers
def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of ``values`` (need not be sorted); nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100), at least the first
    return ordered[min(len(ordered), int(rank)) - 1]


def latency_summary(seconds: list[float]) -> dict[str, float]:
    """p50/p90/p99/p99.9/max and mean of latencies in seconds, in milliseconds."""
    if not seconds:
        return {}
    ordered = sorted(seconds)
    out = {f"p{q:g}_ms": percentile(ordered, q) * 1000 for q in (50, 90, 99, 99.9)}
    out["max_ms"] = ordered[-1] * 1000
    out["mean_ms"] = sum(ordered) / len(ordered) * 1000
    return {k: round(v, 3) for k, v in out.items()}


_WRK_LINE = re.compile(r"^GATEWAY_LOAD (.*)$", re.M)
_WRK_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_WRK_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def parse_wrk(text: str) -> dict[str, Any]:
    """What a wrk run with gateway_load.lua printed: requests/s, ok and bad answers, socket errors and the
    latency percentiles (ms). Raises ValueError when the script's line is missing (wrk failed)."""
    m = _WRK_LINE.search(text)
    if m is None:
        raise ValueError(f"no GATEWAY_LOAD line in wrk's output:\n{text[-2000:]}")
    fields = {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    rps = _WRK_RPS.search(text)
    sock = _WRK_SOCKET.search(text)
    non2xx = _WRK_NON2XX.search(text)
    return {
        "requests": fields["requests"],
        "ok": fields["ok"],
        "bad": fields["bad"],
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(x) for x in sock.groups()) if sock else 0,
        "requests_per_s": round(float(rps.group(1)) if rps else fields["requests"] / (fields["duration_us"] / 1e6), 1),
        "ok_per_s": round(fields["ok"] / (fields["duration_us"] / 1e6), 1),
        "latency": {
            "p50_ms": fields["p50_us"] / 1000,
            "p90_ms": fields["p90_us"] / 1000,
            "p99_ms": fields["p99_us"] / 1000,
            "max_ms": fields["max_us"] / 1000,
        },
    }


def sentence(i: int) -> str:
    words = ("price", "colour", "weight", "owner", "history", "shape", "origin", "purpose")
    return f"Open-loop sentence {i}: the {words[i % len(words)]} of item {i * 7919 % 100003} is unknown."


def parse_response(head: bytes) -> tuple[int, int, bool]:
    """Status, Content-Length and whether the server closes, from an HTTP/1.1 response head."""
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, close = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    return status, length, close


# ---------------------------------------------------------------------------------------------------- open loop
async def _open_loop(url: str, rate: float, duration: float, warmup: float, connections: int) -> dict[str, Any]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection(host, port))
    lat: list[float] = []  # from the send
    sched: list[float] = []  # from the scheduled time
    counts: collections.Counter[str] = collections.Counter()
    total = int(rate * (warmup + duration))
    measured_from = int(rate * warmup)
    tasks: set[asyncio.Task] = set()

    async def one(i: int, due: float) -> None:
        reader, writer = await pool.get()
        body = json.dumps({"texts": [sentence(i)]}).encode()
        req = (
            f"POST /v1/translate HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        ).encode() + body
        sent = time.perf_counter()
        try:
            writer.write(req)
            status, length, close = parse_response((await reader.readuntil(b"\r\n\r\n"))[:-4])
            answer = await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            counts["errors"] += 1
            writer.close()
            pool.put_nowait(await asyncio.open_connection(host, port))
            return
        done = time.perf_counter()
        if close:
            writer.close()
            pool.put_nowait(await asyncio.open_connection(host, port))
        else:
            pool.put_nowait((reader, writer))
        ok = status == 200 and b"[de] " in answer
        if i >= measured_from:
            counts["ok" if ok else f"status_{status}"] += 1
            lat.append(done - sent)
            sched.append(done - due)

    start = time.perf_counter() + 0.05
    late = 0.0
    for i in range(total):
        due = start + i / rate
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        else:
            late = max(late, -wait)
        t = asyncio.ensure_future(one(i, due))
        tasks.add(t)
        t.add_done_callback(tasks.discard)
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    elapsed = time.perf_counter() - start - warmup
    n = sum(counts.values())
    return {
        "rate": rate,
        "duration_s": duration,
        "requests": n,
        "sent_with_warmup": total,
        "achieved_per_s": round(n / elapsed, 1),
        **dict(counts),
        "latency": latency_summary(lat),
        "latency_from_schedule": latency_summary(sched),
        "max_send_lateness_ms": round(late * 1000, 3),
    }


# ---------------------------------------------------------------------------------------------------- servers
class RawRequest(BaseModel):
    texts: list[str]


class RawTranslation(BaseModel):
    text: str
    status: str = "ok"


class RawResponse(BaseModel):
    id: str
    translations: list[RawTranslation]


def _raw_app() -> Any:
    """The raw stack: one FastAPI endpoint, a pydantic model in and out, as the gateway's translate endpoint."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/v1/translate", response_model=RawResponse)
    async def translate(body: RawRequest) -> RawResponse:
        return RawResponse(id="tr-raw", translations=[RawTranslation(text="[de] " + t) for t in body.texts])

    @app.get("/readyz")
    async def readyz() -> dict:
        return {"status": "ready"}

    return app


class _State:
    pass


def _fake_openai_app() -> Any:
    """A bare-ASGI OpenAI-compatible completions server answering like the fake engine (no logprobs)."""
    from batchmt_server.engines.fake import FakeEngine

    engine = FakeEngine()

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                await send({"type": msg["type"] + ".complete"})
                if msg["type"] == "lifespan.shutdown":
                    return
        path = scope["path"]
        if path == "/v1/completions":
            chunks = []
            while True:
                msg = await receive()
                chunks.append(msg.get("body", b""))
                if not msg.get("more_body"):
                    break
            prompt = json.loads(b"".join(chunks))["prompt"]
            sources = engine.query_sources(prompt)
            text = engine.completion_for(prompt, sources, [f"[de] {s}" for s in sources])
            out: dict = {
                "choices": [{"text": text, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": len(prompt) // 4, "completion_tokens": len(text) // 4},
            }
        elif path in ("/v1/models", "/health", "/readyz"):
            out = {"data": [{"id": "fake-openai"}]}
        else:
            out = {}
        body = json.dumps(out).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    app.state = _State()  # type: ignore[attr-defined]  # run_server's DrainingServer sets state.draining
    return app


def _serve_plain(app: Any, port: int) -> int:
    """``app`` under the gateway's own uvicorn configuration (serving.run_server)."""
    from batchmt_server.http.serving import run_server
    from batchmt_server.settings import Settings

    s = Settings(port=port, log_level="warning")
    return run_server(app, s)


def _serve_reuseport(argv: list[str]) -> int:
    """``batchmt-server serve ARGV`` (the real code path) on a socket bound with SO_REUSEPORT, so that several
    processes share one port and the kernel spreads the connections among them."""
    import uvicorn

    from batchmt_server import cli
    from batchmt_server.http import serving

    port = int(argv[argv.index("--port") + 1])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))

    def run(self: Any, sockets: Any = None) -> None:
        uvicorn.Server.run(self, sockets=[sock])

    serving.DrainingServer.run = run  # type: ignore[method-assign]
    return cli.main(["serve", *argv])


# ---------------------------------------------------------------------------------------------------- orchestration
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pin(cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus] if cpus else []


def _wait_ready(url: str, procs: list[subprocess.Popen], log: Path, path: str = "/readyz") -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise SystemExit(f"server exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(url + path, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"server not ready at {url}: {log.read_text()[-3000:]}")


def _gateway_args(port: int, extra: list[str]) -> list[str]:
    return [
        "--port",
        str(port),
        "--translation-memory-size",
        "0",
        "--no-warmup",
        "--calibration",
        "off",
        "--log-level",
        "warning",
        *extra,
    ]


def _env(folder: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHMT_")}
    if folder is not None:
        env["BATCHMT_DATA_DIR"] = str(folder)
    env["PYTHONPATH"] = os.pathsep.join([str(SERVER_TREE / "server"), str(REPO)])
    return env


class Servers:
    """The processes of one case; ``pids`` are the gateway processes (CPU accounting, profiling)."""

    def __init__(self, case: str, folder: Path, pin: bool) -> None:
        self.case, self.folder, self.pin = case, folder, pin
        self.procs: list[subprocess.Popen] = []
        self.gateways: list[subprocess.Popen] = []
        self.last_log = folder / "server.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def _spawn(self, cmd: list[str], name: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        log = self.last_log = self.folder / f"{name}.log"
        p = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=REPO, env=env or _env())
        self.procs.append(p)
        return p

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        py = [sys.executable, "-m"]
        cpus = "0" if self.pin else None
        if self.case == "raw":
            p = self._spawn(_pin(cpus) + py + ["benchmarks.gateway_load", "raw", "--port", str(self.port)], "raw")
            self.gateways.append(p)
        elif self.case in ("gateway", "gateway-nowait"):
            extra = ["--engine", "fake"] + (["--max-wait-ms", "0"] if self.case == "gateway-nowait" else [])
            cmd = _pin(cpus) + py + ["batchmt_server", "serve", *_gateway_args(self.port, extra)]
            self.gateways.append(self._spawn(cmd, "gateway", _env(self.folder / "data")))
        else:
            n = int(self.case.split("-")[1].rstrip("w"))
            eport = free_port()
            engine = self._spawn(py + ["benchmarks.gateway_load", "fake-openai", "--port", str(eport)], "fake-openai")
            _wait_ready(f"http://127.0.0.1:{eport}", [engine], self.folder / "fake-openai.log", "/health")
            for k in range(n):
                extra = ["--engine", "http", "--engine-url", f"http://127.0.0.1:{eport}"]
                cmd = py + ["benchmarks.gateway_load", "serve-reuseport", *_gateway_args(self.port, extra)]
                self.gateways.append(self._spawn(cmd, f"gateway-{k}", _env(self.folder / f"data-{k}")))
        _wait_ready(self.url, self.procs, self.last_log)
        if len(self.gateways) > 1:  # every process ready, not only the one that answered
            time.sleep(2.0)

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self.gateways:
            try:
                t = psutil.Process(p.pid).cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


def run_wrk(url: str, duration: float, connections: int, cpus: str | None) -> dict[str, Any]:
    cmd = _pin(cpus) + [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{int(duration)}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    return parse_wrk(out.stdout + out.stderr)


def run_open_loop(url: str, rate: float, duration: float, cpus: str | None, connections: int) -> dict[str, Any]:
    cmd = _pin(cpus) + [
        sys.executable,
        "-m",
        "benchmarks.gateway_load",
        "openloop",
        "--url",
        url,
        "--rate",
        str(rate),
        "--duration",
        str(duration),
        "--connections",
        str(connections),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120, cwd=REPO, check=True)
    return json.loads(out.stdout)


def py_spy_record(pid: int, out: Path, rate: int, seconds: float | None = None) -> list[str]:
    """The py-spy command sampling ``pid`` into ``out`` (``--format raw``: collapsed stacks; ``--nonblocking``: the
    process is not paused) for ``seconds``, or until it gets SIGINT."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    cmd = [spy, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw", "--nonblocking"]
    return cmd + ["--output", str(out)] + (["--duration", str(int(seconds))] if seconds is not None else [])


def profile(pid: int, seconds: float, out: Path) -> None:
    """py-spy samples the gateway while wrk loads it."""
    subprocess.run(
        py_spy_record(pid, out, 200, seconds),
        check=True,
        capture_output=True,
        timeout=seconds + 60,
    )


#: frames every sample of the serving process passes through (start-up and the event loop): left out of the
#: inclusive list, where they would only say 100%
PLUMBING = re.compile(
    r"<frozen runpy>|\(<string>\)|^<module> |batchmt_server/(__main__|cli|serving)\.py|uvicorn/(server|_compat)\.py|"
    r"asyncio/runners\.py|benchmarks/gateway_load\.py|uvloop/__init__\.py"
)


def top_frames(collapsed: str, n: int = 20, plumbing: re.Pattern[str] = PLUMBING) -> dict[str, list[tuple[str, float]]]:
    """From py-spy's collapsed stacks (``frame;frame;... count``): the ``n`` functions with the most samples on
    top of the stack (self) and anywhere in it (inclusive, the frames ``plumbing`` matches left out: start-up and
    event loop), as shares of all samples. A frame is ``func (file:line)``; the line is dropped so a function
    counts once."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        c = int(count)
        total += c
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        frames = [re.sub(r"\(/.*?/(site-packages|server|benchmarks)/", r"(", f) for f in frames]
        own[frames[-1]] += c
        for f in set(frames):
            if not plumbing.search(f):
                incl[f] += c
    share = max(1, total)
    return {
        "self": [(f, round(c / share, 4)) for f, c in own.most_common(n)],
        "inclusive": [(f, round(c / share, 4)) for f, c in incl.most_common(n)],
        "samples": [("total", float(total))],
    }


def tool_versions() -> dict[str, str]:
    def first_line(cmd: list[str]) -> str:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "missing"

    import fastapi
    import pydantic
    import starlette
    import uvicorn

    vs = {
        "python": platform.python_version(),
        "wrk": first_line(["wrk", "--version"]),
        "uvicorn": uvicorn.__version__,
        "fastapi": fastapi.__version__,
        "starlette": starlette.__version__,
        "pydantic": pydantic.__version__,
        "py-spy": first_line([shutil.which("py-spy") or "py-spy", "--version"]),
    }
    for mod in ("uvloop", "httptools", "orjson"):
        try:
            vs[mod] = __import__(mod).__version__
        except ImportError:
            vs[mod] = "not installed"
    return vs


def signature() -> dict[str, Any]:
    def git(*a: str, tree: Path | None = None) -> str:
        return subprocess.run(["git", *a], capture_output=True, text=True, cwd=tree or SERVER_TREE).stdout.strip()

    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln),
        "?",
    )
    return {
        "commit": git("rev-parse", "--short", "HEAD"),  # of the server code measured
        "dirty": bool(git("status", "--porcelain", "--", "server")),
        "benchmark_commit": git("rev-parse", "--short", "HEAD", tree=REPO),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "cpu": cpu,
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "tools": tool_versions(),
    }


def run_case(case: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    pin = args.pin and not case.startswith("http-")
    servers = Servers(case, folder / case, pin)
    load_cpus = "1" if pin else None
    result: dict[str, Any] = {"note": CASE_NOTES[case], "pinned": pin}
    servers.start()
    try:
        # warm up (imports, first-request paths), then max throughput
        run_wrk(servers.url, 3, args.connections, load_cpus)
        if "max" in args.loads:
            c0 = servers.cpu_seconds()
            r = run_wrk(servers.url, args.duration, args.connections, load_cpus)
            r["gateway_cpu_us_per_request"] = round((servers.cpu_seconds() - c0) / max(1, r["requests"]) * 1e6, 1)
            result["max"] = r
            print(f"{case} max: {r['ok_per_s']:.0f} ok/s, p99 {r['latency']['p99_ms']} ms", flush=True)
        for rate in args.rates:
            c0 = servers.cpu_seconds()
            r = run_open_loop(servers.url, rate, args.duration, load_cpus, args.open_connections)
            cpu = servers.cpu_seconds() - c0  # the warm-up's requests too (their CPU is in it)
            r["gateway_cpu_us_per_request"] = round(cpu / max(1, r["sent_with_warmup"]) * 1e6, 1)
            result[f"rate_{int(rate)}"] = r
            print(
                f"{case} {rate:g}/s: p50 {r['latency'].get('p50_ms')} p99 {r['latency'].get('p99_ms')} ms "
                f"(from schedule p99 {r['latency_from_schedule'].get('p99_ms')})",
                flush=True,
            )
        if case in args.profile:
            raw = folder / f"profile-{case}.txt"  # collapsed stacks, kept gzipped beside the report
            pid = servers.gateways[0].pid
            import threading

            th = threading.Thread(target=profile, args=(pid, args.duration - 2, raw))
            th.start()
            time.sleep(0.5)
            r = run_wrk(servers.url, args.duration, args.connections, load_cpus)
            th.join()
            result["profiled_max"] = {"ok_per_s": r["ok_per_s"], "note": "under py-spy --nonblocking, 200 Hz"}
            result["profile"] = top_frames(raw.read_text())
            keep = args.out / "profiles" / f"{args.label}-{case}.txt.gz"
            keep.parent.mkdir(parents=True, exist_ok=True)
            keep.write_bytes(gzip.compress(raw.read_bytes()))
    finally:
        servers.stop()
    return result


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def render(report: dict[str, Any]) -> str:
    lines = [
        "# Gateway alone under external load (issue 16, item 5)",
        "",
        'One-sentence requests (`{"texts": ["..."]}`, every sentence different) against the zero-latency fake '
        "engine on loopback; translation memory, warm-up and calibration off; log level warning. The load comes "
        "from a separate process: `wrk` (max) and benchmarks/gateway_load.py's open-loop generator (fixed rates). "
        "Pinned cases: the server on core 0, the load generator on core 1. Latency at a fixed rate is the whole "
        "request as the client sees it; against the fake engine that is what the gateway adds (the raw-stack row "
        "is the floor of uvicorn + FastAPI + the client on this machine).",
        "",
    ]
    notes = report.get("notes_path")
    if notes and (REPO / notes).exists():  # what the runs say, written by hand next to the report
        lines += [(REPO / notes).read_text(encoding="utf-8").strip(), ""]
    labels = list(report["runs"])
    for label in labels:
        run = report["runs"][label]
        sig = run["signature"]
        lines += [
            f"## {label}",
            "",
            f"commit `{sig['commit']}`{' (+ uncommitted changes)' if sig['dirty'] else ''}, {sig['date']}, "
            f"{sig['cores']} cores ({sig['cpu']}), load average at start {sig['load_avg_at_start']}; "
            f"`{run['command']}`",
            "",
            "| case | max ok req/s | p99 at max (ms) | CPU µs/req at max | 100/s p50 / p99 (ms) | 100/s p99 from "
            "schedule | 1,000/s p50 / p99 (ms) | 1,000/s p99 from schedule | 1,000/s CPU µs/req | errors |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for case, res in run["cases"].items():
            mx = res.get("max", {})
            r1, r2 = res.get("rate_100", {}), res.get("rate_1000", {})
            errors = (mx.get("bad", 0) + mx.get("socket_errors", 0)) + sum(
                v for r in (r1, r2) for k, v in r.items() if k == "errors" or k.startswith("status_")
            )
            lines.append(
                f"| {case} | {_fmt(mx.get('ok_per_s'), 0)} | {_fmt(mx.get('latency', {}).get('p99_ms'))} | "
                f"{_fmt(mx.get('gateway_cpu_us_per_request'), 0)} | "
                f"{_fmt(r1.get('latency', {}).get('p50_ms'))} / {_fmt(r1.get('latency', {}).get('p99_ms'))} | "
                f"{_fmt(r1.get('latency_from_schedule', {}).get('p99_ms'))} | "
                f"{_fmt(r2.get('latency', {}).get('p50_ms'))} / {_fmt(r2.get('latency', {}).get('p99_ms'))} | "
                f"{_fmt(r2.get('latency_from_schedule', {}).get('p99_ms'))} | "
                f"{_fmt(r2.get('gateway_cpu_us_per_request'), 0)} | {errors} |"
            )
        lines.append("")
        for case, res in run["cases"].items():
            lines.append(f"- **{case}**: {res['note']}")
        lines.append("")
        for case, res in run["cases"].items():
            if "profile" in res:
                lines += [
                    f"Profile of `{case}` under max load (py-spy, {res['profiled_max']['ok_per_s']:.0f} ok req/s while "
                    f"sampled): share of samples, inclusive",
                    "",
                ]
                lines += [f"    {share:6.1%}  {frame}" for frame, share in res["profile"]["inclusive"]]
                lines += ["", "self (on top of the stack):", ""]
                lines += [f"    {share:6.1%}  {frame}" for frame, share in res["profile"]["self"]]
                lines.append("")
    if "before" in report["runs"] and len(labels) > 1:
        before = report["runs"]["before"]["cases"]
        for label in labels:
            if label == "before":
                continue
            after = report["runs"][label]["cases"]
            lines += [
                f"## {label} / before",
                "",
                "| case | max ok req/s | CPU µs/req at max | 1,000/s p50 | 1,000/s p99 |",
                "|---|---:|---:|---:|---:|",
            ]
            for case in after:
                if case not in before:
                    continue
                a, b = after[case], before[case]

                def ratio(path: tuple[str, ...], a: dict = a, b: dict = b) -> str:
                    x: Any = a
                    y: Any = b
                    for p in path:
                        x, y = (x or {}).get(p), (y or {}).get(p)
                    return f"{x / y:.2f}×" if isinstance(x, (int, float)) and isinstance(y, (int, float)) and y else "–"

                lines.append(
                    f"| {case} | {ratio(('max', 'ok_per_s'))} | {ratio(('max', 'gateway_cpu_us_per_request'))} | "
                    f"{ratio(('rate_1000', 'latency', 'p50_ms'))} | {ratio(('rate_1000', 'latency', 'p99_ms'))} |"
                )
            lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "raw":
        ap = argparse.ArgumentParser()
        ap.add_argument("--port", type=int, required=True)
        return _serve_plain(_raw_app(), ap.parse_args(argv[1:]).port)
    if argv and argv[0] == "fake-openai":
        ap = argparse.ArgumentParser()
        ap.add_argument("--port", type=int, required=True)
        return _serve_plain(_fake_openai_app(), ap.parse_args(argv[1:]).port)
    if argv and argv[0] == "serve-reuseport":
        return _serve_reuseport(argv[1:])
    if argv and argv[0] == "openloop":
        ap = argparse.ArgumentParser()
        ap.add_argument("--url", required=True)
        ap.add_argument("--rate", type=float, required=True)
        ap.add_argument("--duration", type=float, default=20.0)
        ap.add_argument("--warmup", type=float, default=2.0)
        ap.add_argument("--connections", type=int, default=32)
        a = ap.parse_args(argv[1:])
        import uvloop

        res = uvloop.run(_open_loop(a.url, a.rate, a.duration, a.warmup, a.connections))
        print(json.dumps(res))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--label", default="current", help="the run's name in the report (e.g. before, after)")
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {','.join(CASES)}")
    ap.add_argument("--loads", default="max", help="'max' for the wrk run, '' for none")
    ap.add_argument("--rates", default="100,1000", help="fixed rates (req/s) of the open-loop runs")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per measurement")
    ap.add_argument("--connections", type=int, default=32, help="wrk's keep-alive connections")
    ap.add_argument("--open-connections", type=int, default=32, help="the open-loop generator's connections")
    ap.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin server and load to cores")
    ap.add_argument(
        "--profile", default="", help="cases (comma-separated) that get one more max run under py-spy (top frames)"
    )
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--server-tree", type=Path, default=REPO, help="checkout whose server/ the gateways run")
    ap.add_argument("--render", action="store_true", help="only write report.md again from report.json (and notes.md)")
    args = ap.parse_args(argv)
    if args.render:
        (args.out / "report.md").write_text(render(json.loads((args.out / "report.json").read_text())), "utf-8")
        return 0
    global SERVER_TREE
    SERVER_TREE = args.server_tree.resolve()
    args.rates = [float(x) for x in args.rates.split(",") if x]
    args.loads = [x for x in args.loads.split(",") if x]
    args.profile = {x for x in args.profile.split(",") if x}
    if shutil.which("wrk") is None and "max" in args.loads:
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    args.out.mkdir(parents=True, exist_ok=True)
    sig = signature()
    cases: dict[str, Any] = {}
    for case in [c for c in args.cases.split(",") if c]:
        if case not in CASES:
            raise SystemExit(f"unknown case {case!r}; one of {CASES}")
        # the processes' folders (logs, stores) in a temporary folder; results/ gets the report and the profiles
        cases[case] = run_case(case, args, Path(tempfile.mkdtemp(prefix="gateway-load-")) / args.label)
    path = args.out / "report.json"
    report = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    prev = report["runs"].get(args.label, {}).get("cases", {})
    report["runs"][args.label] = {
        "signature": sig,
        "command": "python -m benchmarks.gateway_load " + " ".join(argv),
        "cases": {**prev, **cases},  # a partial run (--cases) keeps the label's other cases
    }
    report["notes_path"] = str((args.out / "notes.md").relative_to(REPO)) if args.out.is_relative_to(REPO) else None
    path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    (args.out / "report.md").write_text(render(report), encoding="utf-8")
    print(f"wrote {path} and report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
