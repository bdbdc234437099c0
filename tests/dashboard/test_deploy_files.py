"""deploy/ is valid: promtool checks the config and rules, promtool's rule unit tests fire the
alerts on synthetic series, and the Grafana dashboard is a well-formed provisioned dashboard."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from .conftest import DEPLOY, need_binary

PROM = DEPLOY / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([need_binary("promtool"), *args], capture_output=True, text=True, timeout=120)


@pytest.mark.system
def test_promtool_check_rules():
    r = promtool("check", "rules", str(PROM / "rules.yml"), str(PROM / "alerts.yml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 7 rules found" in r.stdout


@pytest.mark.system
def test_promtool_check_config():
    r = promtool("check", "config", str(PROM / "prometheus.yml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 rule files found" in r.stdout


@pytest.mark.system
def test_promtool_rule_unit_tests_fire_the_alerts():
    r = promtool("test", "rules", str(PROM / "alerts.test.yml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_alerts_cover_latency_errors_saturation_and_repairs():
    names = {r["alert"] for g in yaml.safe_load((PROM / "alerts.yml").read_text())["groups"] for r in g["rules"]}
    assert {"BatchmtHighLatency", "BatchmtHighErrorRate", "BatchmtQueueSaturated", "BatchmtHighRepairRate"} <= names


def test_grafana_dashboard_is_provisioned_and_has_the_panels():
    dash = json.loads((DEPLOY / "grafana" / "dashboards" / "batchmt.json").read_text())
    ds = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = ds["datasources"][0]["uid"]
    prov = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "batchmt.yml").read_text())
    assert prov["providers"][0]["type"] == "file"
    panels = dash["panels"]
    assert dash["uid"] and dash["schemaVersion"] >= 30
    assert len({p["id"] for p in panels}) == len(panels)
    cells = set()
    for p in panels:
        assert p["datasource"]["uid"] == uid and p["targets"], p["title"]
        assert all(t["expr"].strip() and t["datasource"]["uid"] == uid for t in p["targets"]), p["title"]
        g = p["gridPos"]
        cell = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cell & cells, f"{p['title']} overlaps another panel"
        cells |= cell
    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    for needle in (
        "batchmt_sentences_total",
        "batchmt_request_duration_seconds_bucket",
        "batchmt_queue_wait_seconds_bucket",
        "batchmt_sentences_per_prompt",
        "batchmt_cost_total",
        "batchmt_baseline_cost_total",
        "batchmt_cached_prompt_tokens_total",
        "batchmt_repairs_total",
        "vllm:",
    ):
        assert needle in exprs, needle
    titles = " ".join(p["title"].lower() for p in panels)
    for word in (
        "sentences / s",
        "p50 / p95 / p99",
        "queue wait",
        "sentences per prompt",
        "cost per 1k",
        "cost per hour",
        "saving",
        "prefix-cache hit rate",
        "repairs",
        "vllm",
    ):
        assert word in titles, word
