"""A real Prometheus (Debian package ``prometheus``, loopback only) scrapes a real gateway under
traffic with the shipped config and rules; every Grafana and rule query must return data."""

from __future__ import annotations

import json
import math
import re
import subprocess
import time

import httpx
import pytest
import yaml

from .conftest import ARTIFACTS, DEPLOY, Live, free_port, need_binary

pytestmark = [pytest.mark.engine, pytest.mark.timeout(900)]

RATE_WINDOW = "30s"  # stands in for Grafana's $__rate_interval at a 1 s scrape interval
_THRESHOLD = re.compile(r"^(?P<signal>.*\S)\s*(?:>|<|>=|<=|==|!=)\s*[-+0-9.e]+\s*$", re.S)


def dashboard_queries() -> list[tuple[str, str]]:
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "batchmt.json").read_text())
    return [
        (f"panel {p['title']!r} {t['refId']}", t["expr"].replace("$__rate_interval", RATE_WINDOW))
        for p in dash["panels"]
        for t in p["targets"]
    ]


def rule_queries() -> list[tuple[str, str]]:
    out = []
    for name in ("rules.yml", "alerts.yml"):
        for group in yaml.safe_load((DEPLOY / "prometheus" / name).read_text())["groups"]:
            for rule in group["rules"]:
                expr = " ".join(rule["expr"].split())
                if "alert" in rule:  # the signal, without its threshold: an alert that does not fire has no data
                    m = _THRESHOLD.match(expr)
                    assert m, f"alert {rule['alert']}: expression is not '<signal> <op> <threshold>': {expr}"
                    out.append((f"alert {rule['alert']}", m["signal"]))
                else:
                    out.append((f"record {rule['record']}", expr))
    return out


@pytest.fixture
def prometheus(live_gateway: Live, tmp_path):
    """Prometheus with deploy/prometheus's rules and its config, targets pointed at the live gateway."""
    binary = need_binary("prometheus")
    cfg = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    cfg["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert set(jobs) >= {job for job, _ in live_gateway.scrape}, "deploy config lacks a job the test scrapes"
    cfg["scrape_configs"] = [
        {**jobs[job], "static_configs": [{"targets": [hostport]}]} for job, hostport in live_gateway.scrape
    ]
    cfg["rule_files"] = [str(DEPLOY / "prometheus" / f) for f in cfg["rule_files"]]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    port = free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    log = (ARTIFACTS / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"prometheus exited with {proc.returncode}; see test-artifacts/prometheus.log")
            try:
                if httpx.get(url + "/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("prometheus not ready in 60 s")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def query(prom: str, expr: str) -> list[dict]:
    r = httpx.get(prom + "/api/v1/query", params={"query": expr}, timeout=30)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", f"{expr}: {body}"
    return body["data"]["result"]


def finite(result: list[dict]) -> bool:
    return any(math.isfinite(float(s["value"][1])) for s in result)


def test_every_dashboard_and_rule_query_returns_data(prometheus: str, live_gateway: Live, traffic):
    queries = dashboard_queries() + rule_queries()
    assert sum("vllm:" in expr for _, expr in queries) >= 6
    if not live_gateway.real_engine:  # development against a fake-engine gateway: there is no vLLM to scrape
        queries = [(name, expr) for name, expr in queries if "vllm:" not in expr]
    # and the recording rules' own series (their group evaluates every 15 s)
    queries += [
        ("recorded series", "batchmt:sentences_translated:rate1m"),
        ("recorded series", "batchmt:prefix_cache_hit_ratio:5m"),
    ]
    traffic.wait_for(3)
    # all targets up, and enough scrapes under traffic for a 30 s rate window
    deadline = time.monotonic() + 240
    missing: list[str] = []
    while time.monotonic() < deadline:
        targets = httpx.get(prometheus + "/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
        up = all(t["health"] == "up" for t in targets) and len(targets) == len(live_gateway.scrape)
        missing = [name for name, expr in queries if not finite(query(prometheus, expr))]
        if up and not missing:
            break
        time.sleep(3)
    assert up, f"targets not all up: {[(t['labels'], t['health'], t.get('lastError')) for t in targets]}"
    assert not missing, f"queries without data after traffic: {missing}"
    # the rules loaded and evaluate without error, recording rules produced series
    groups = httpx.get(prometheus + "/api/v1/rules", timeout=10).json()["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) == len(rule_queries())
    assert all(r["health"] == "ok" for r in rules), [
        (r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"
    ]
    # what Prometheus scraped is what the gateway counts
    translated = float(query(prometheus, 'sum(batchmt_sentences_total{outcome="translated"})')[0]["value"][1])
    assert translated > 0
    # a ratio, evaluated from both counters (a missing or NaN series fails above or here). It may be 0: the served
    # model's zero-shot prefix (23 tokens) is shorter than one 32-token KV block, so only repeated prompts hit
    hit = float(query(prometheus, "batchmt:prefix_cache_hit_ratio:5m")[0]["value"][1])
    assert 0.0 <= hit <= 1.0, hit
    assert not traffic.errors, traffic.errors[:3]
