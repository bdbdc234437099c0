"""Overload run (issue 13): a real gateway process on loopback, a load generator in a separate process (locust,
headless, bounded in time) offering ``--factor`` times the gateway's capacity, and what came of it: 5xx, lost or
misplaced sentences, 429s with Retry-After, p99 of the admitted requests, the gateway's RSS, the time to recover.

Fake engine (default): every engine call takes ``--fake-delay-ms``, ``--in-flight`` calls at once, one sentence per
prompt, so the capacity is ``in_flight / delay`` sentences/s and only the gateway is under test::

    python -m benchmarks.overload --duration 60 --factor 10          # ~2 min; results/overload/

Real embedded engine (``--engine vllm``; run it under ``flock /tmp/batchmt-engine.lock``): the capacity is measured
first with a closed loop, then offered ``--factor`` times.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gateway(args: argparse.Namespace, port: int, folder: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHMT_")}
    env["BATCHMT_DATA_DIR"] = str(folder / "data")
    cmd = [
        sys.executable,
        "-m",
        "batchmt_server",
        "serve",
        "--port",
        str(port),
        "--calibration",
        "off",
        "--max-prompts-in-flight",
        str(args.in_flight),
        "--max-queue-sentences",
        str(args.queue),
        "--max-sentences-per-request",
        str(min(128, args.queue)),
        "--translation-memory-size",
        "0",
        "--log-level",
        "warning",
    ]
    if args.engine == "fake":
        cmd += [
            "--engine",
            "fake",
            "--no-warmup",
            "--fake-engine-delay-ms",
            str(args.fake_delay_ms),
            "--max-sentences-per-prompt",
            "1",
        ]
    else:
        cmd += ["--enforce-eager", "--max-num-seqs", str(args.in_flight)]
    proc = subprocess.Popen(cmd, stdout=(folder / "gateway.log").open("w"), stderr=subprocess.STDOUT, env=env, cwd=REPO)
    deadline = time.monotonic() + (900 if args.engine != "fake" else 60)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gateway exited: {(folder / 'gateway.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("gateway not ready in time")


def measure_capacity(url: str, sentences: int, seconds: float, concurrency: int) -> float:
    """Sentences/s of a closed loop that keeps ``concurrency`` requests in flight."""
    done = 0
    stop = time.monotonic() + seconds
    lock = threading.Lock()

    def loop(k: int) -> None:
        nonlocal done
        with httpx.Client(base_url=url, timeout=120) as c:
            i = 0
            while time.monotonic() < stop:
                srcs = [f"Capacity probe {k}-{i} sentence {j} here." for j in range(sentences)]
                r = c.post("/v1/translate", json={"sentences": srcs})
                if r.status_code == 200:
                    with lock:
                        done += sentences
                i += 1

    t0 = time.monotonic()
    threads = [threading.Thread(target=loop, args=(k,)) for k in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done / (time.monotonic() - t0)


def _by_outcome(metrics: str, name: str) -> dict[str, float]:
    """``{outcome: value}`` of one counter in a Prometheus text exposition."""
    out: dict[str, float] = {}
    for line in metrics.splitlines():
        if line.startswith(name + "{") and 'outcome="' in line:
            out[line.split('outcome="', 1)[1].split('"', 1)[0]] = float(line.rsplit(" ", 1)[1])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", choices=("fake", "vllm"), default="fake")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of overload")
    ap.add_argument("--factor", type=float, default=10.0, help="offered load / capacity")
    ap.add_argument("--sentences", type=int, default=8, help="sentences per request")
    ap.add_argument("--fake-delay-ms", type=float, default=100.0)
    ap.add_argument("--in-flight", type=int, default=4)
    ap.add_argument("--queue", type=int, default=256, help="--max-queue-sentences of the gateway")
    ap.add_argument("--user-rate", type=float, default=1.0, help="requests/s per locust user")
    ap.add_argument(
        "--users",
        type=int,
        default=None,
        help="locust users (default: enough for the factor if no "
        "request waited; admitted requests do wait, so the measured factor is reported too)",
    )
    ap.add_argument("--out", type=Path, default=REPO / "results" / "overload")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_gateway(args, port, args.out)
    gw = psutil.Process(proc.pid)
    try:
        if args.engine == "fake":
            capacity = args.in_flight / (args.fake_delay_ms / 1000.0)
            measured = None
        else:
            measured = capacity = measure_capacity(url, args.sentences, 60.0, max(2, args.in_flight // args.sentences))
        offered = capacity * args.factor
        users = args.users or max(1, math.ceil(offered / args.sentences / args.user_rate))
        rss_before = gw.memory_info().rss
        rss: list[int] = []
        sampling = True

        def sample() -> None:
            while sampling:
                try:
                    rss.append(gw.memory_info().rss)
                except psutil.Error:
                    return
                time.sleep(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        summary = args.out / "locust-summary.json"
        env = {
            **os.environ,
            "OVERLOAD_SUMMARY": str(summary),
            "OVERLOAD_SENTENCES": str(args.sentences),
            "OVERLOAD_USER_RATE": str(args.user_rate),
            "OVERLOAD_EXACT": "1" if args.engine == "fake" else "0",
        }
        locust_cmd = [
            str(Path(sys.executable).with_name("locust")),
            "-f",
            str(REPO / "benchmarks" / "overload_locustfile.py"),
            "--headless",
            "-u",
            str(users),
            "-r",
            str(users),
            "-t",
            f"{int(args.duration)}s",
            "--host",
            url,
            "--csv",
            str(args.out / "locust"),
            "--only-summary",
            "--stop-timeout",
            "120",
            "--exit-code-on-error",
            "0",
        ]
        print(
            f"capacity {capacity:.0f} sentences/s; offering {offered:.0f}/s with {users} users x "
            f"{args.user_rate:g} req/s x {args.sentences} sentences for {args.duration:.0f}s",
            flush=True,
        )
        t_load = time.monotonic()
        subprocess.run(
            locust_cmd,
            env=env,
            cwd=REPO,
            check=True,
            stdout=(args.out / "locust.log").open("w"),
            stderr=subprocess.STDOUT,
            timeout=args.duration + 600,
        )
        load_seconds = time.monotonic() - t_load
        # recovery: from the end of the offered load (locust then waits for the admitted requests it still has in
        # flight) until a fresh request is answered as fast as on an idle gateway
        t_end = t_load + args.duration
        idle_latency = args.sentences / capacity * 2 + 0.5  # generous: one request's own work, twice, plus 0.5 s
        recovered = None
        with httpx.Client(base_url=url, timeout=120) as c:
            k = 0
            while time.monotonic() - t_end < 300:
                srcs = [f"Recovery probe {k} sentence {j}." for j in range(args.sentences)]
                t0 = time.monotonic()
                r = c.post("/v1/translate", json={"sentences": srcs})
                if r.status_code == 200 and time.monotonic() - t0 <= idle_latency:
                    recovered = time.monotonic() - t_end
                    break
                k += 1
                time.sleep(0.2)
            metrics = c.get("/metrics").text
        sampling = False
        sampler.join()
        totals = json.loads(summary.read_text())
        lat = sorted(totals.pop("latencies_ok_s"))
        gateway_5xx = sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("batchmt_requests_total") and 'outcome="failed"' in line
        )
        result = {
            "engine": args.engine,
            "duration_s": round(load_seconds, 1),
            "capacity_sentences_per_s": round(capacity, 1),
            "capacity_measured": measured is not None,
            "offered_sentences_per_s": round(offered, 1),
            "factor": args.factor,
            "users": users,
            "sentences_per_request": args.sentences,
            **totals,
            "offered_measured_sentences_per_s": round(totals["requests"] * args.sentences / args.duration, 1),
            "factor_measured": round(totals["requests"] * args.sentences / args.duration / capacity, 1),
            "admitted_sentences_per_s": round(totals["sentences_translated"] / args.duration, 1),
            "p50_admitted_s": round(statistics.median(lat), 3) if lat else None,
            "p99_admitted_s": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))], 3) if lat else None,
            "rss_before_mib": round(rss_before / 2**20, 1),
            "rss_max_mib": round(max(rss or [rss_before]) / 2**20, 1),
            "rss_after_mib": round(gw.memory_info().rss / 2**20, 1),
            "recovery_s": None if recovered is None else round(recovered, 2),
            "gateway_failed_requests": gateway_5xx,
            "gateway_requests": _by_outcome(metrics, "batchmt_requests_total"),
            "gateway_sentences": _by_outcome(metrics, "batchmt_sentences_total"),
            "command": "python -m benchmarks.overload " + " ".join(argv if argv is not None else sys.argv[1:]),
        }
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    (args.out / "summary.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1))
    ok = (
        result["server_errors"] == 0
        and result["sentences_lost"] == 0
        and result["sentences_misplaced"] == 0
        and result["rejected_429"] == result["retry_after_present"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
