"""deploy/compose.router.yaml: batchmt's --engine-url in front of an existing router (the vLLM production stack's),
checked offline like compose.yaml: the Compose Specification schema, and what no schema sees (the gateway names
only the router; the router names the engines and the model they serve; its flags are the router's own)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import yaml

from .test_deploy_manifests import DEPLOY, run, tool

EXAMPLE = DEPLOY / "compose.router.yaml"
# the production stack router's --routing-logic choices (vllm-project/production-stack,
# src/vllm_router/parsers/parser.py, 2026-08)
ROUTING_LOGIC = {"roundrobin", "session", "kvaware", "prefixaware", "disaggregated_prefill"}


def _doc() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def _flags(args: list[str]) -> dict[str, str]:
    return {a.split("=", 1)[0]: (a.split("=", 1)[1] if "=" in a else "") for a in args if a.startswith("--")}


def test_the_router_example_validates_against_the_compose_spec():
    r = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(EXAMPLE))
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_compose_spec_rejects_a_broken_router_example(tmp_path: Path):
    doc = _doc()
    doc["services"]["router"]["depends_on"] = {"engine-1": {"condition": "service_ready"}}  # not a condition
    bad = tmp_path / "compose.router.yaml"
    bad.write_text(yaml.safe_dump(doc))
    r = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(bad))
    assert r.returncode != 0, r.stdout


def test_the_gateway_names_only_the_router_and_the_router_the_engines():
    services = _doc()["services"]
    env = services["gateway"]["environment"]
    assert env["BATCHMT_ENGINE"] == "http"
    (url,) = env["BATCHMT_ENGINE_URL"].split(",")  # one URL: the router places the prompts, not batchmt
    router = urlparse(url)
    assert router.hostname == "router"
    flags = _flags(services["router"]["command"])
    assert int(flags["--port"]) == router.port
    assert flags["--service-discovery"] == "static" and flags["--routing-logic"] in ROUTING_LOGIC
    backends = [urlparse(u) for u in flags["--static-backends"].split(",")]
    engines = {n: s for n, s in services.items() if str(s.get("image", "")).startswith("vllm/vllm-openai:")}
    assert sorted(b.hostname for b in backends) == sorted(engines) and len(engines) >= 2
    assert all(b.port == 8000 for b in backends)  # vllm serve's default port
    models = flags["--static-models"].split(",")
    assert len(models) == len(backends)
    for name, s in engines.items():
        served = _flags(s["command"])["--served-model-name"]
        assert models == [served] * len(backends), name
        assert env["BATCHMT_SERVED_MODEL_NAME"] == served
        assert "--enable-prefix-caching" in s["command"]  # what the prefix-aware routing is for
    assert set(services["gateway"]["depends_on"]) == {"postgres", "router"}
    gw = services["gateway"]["build"]
    assert (DEPLOY / gw["context"] / gw["dockerfile"]).exists()


def test_deploy_readme_shows_the_router_example_and_where_the_line_is():
    text = (DEPLOY / "README.md").read_text()
    assert "compose.router.yaml" in text and "router-service" in text and "llm-d" in text
    assert "Where the line is" in text
