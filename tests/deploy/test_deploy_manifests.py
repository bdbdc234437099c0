"""deploy/ for real deployments, checked offline (no Docker engine nor Kubernetes cluster here):
hadolint on the Dockerfile, check-jsonschema's built-in Compose Specification schema on compose.yaml,
kubernetes-validate (strict) on every rendered Kustomize overlay, promtool on the extra scrape configs,
and cross-references no schema sees (engine URLs name real engine pods, probes hit /readyz and /healthz,
mounted files exist, the autoscaler targets the gateway). Each validator is also shown a broken file and
must reject it, so a test cannot pass because a tool checked nothing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from .kustomize_lite import render

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
OVERLAYS = sorted(p for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").exists())
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """A validator from the `test` extra (installed in the venv beside this Python)."""
    for cand in (BIN / name, shutil.which(name)):
        if cand and Path(cand).exists():
            return str(cand)
    pytest.fail(f"'{name}' is missing: pip install -e '.[test]' (it is in the test extra)")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


# --- Dockerfile -------------------------------------------------------------------------------------------


def test_hadolint_passes_on_the_gateway_dockerfile():
    r = run(tool("hadolint"), "--no-color", str(DEPLOY / "Dockerfile"))
    assert r.returncode == 0, r.stdout + r.stderr


def test_hadolint_rejects_a_broken_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        (DEPLOY / "Dockerfile").read_text().replace("USER 10001:10001", "USER root") + "RUN apt-get install curl\n"
    )
    r = run(tool("hadolint"), "--no-color", str(bad))
    assert r.returncode != 0
    assert "DL3002" in r.stdout and "DL3014" in r.stdout, r.stdout  # last USER root; apt-get without -y


def test_dockerfile_is_slim_non_root_with_a_healthcheck_and_can_bake_the_model():
    text = (DEPLOY / "Dockerfile").read_text()
    final = text[text.rindex("\nFROM ") :]
    assert "slim" in text.split("ARG PYTHON_IMAGE=", 1)[1].splitlines()[0]
    users = [line.split()[1] for line in final.splitlines() if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert "HEALTHCHECK" in final and "/healthz" in final
    assert "batchmt-server prepare-model" in final and "BAKE_MODEL" in final
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text()
    assert ignore.splitlines()[1] == "*", "the build context must be an allow-list"
    for path in ("pyproject.toml", "README.md", "client", "server", "prompts"):
        assert (REPO / path).exists() and f"!{path}" in ignore


# --- compose.yaml -----------------------------------------------------------------------------------------


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_validates_against_the_compose_spec():
    r = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(DEPLOY / "compose.yaml"))
    assert r.returncode == 0, r.stdout + r.stderr


def test_compose_spec_rejects_a_broken_compose_file(tmp_path):
    doc = compose()
    doc["services"]["engine-1"]["deploy"]["resources"]["reservations"]["devices"][0]["count"] = "two"
    doc["services"]["gateway"]["restart_policy"] = "always"  # not a service key
    bad = tmp_path / "compose.yaml"
    bad.write_text(yaml.safe_dump(doc))
    r = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(bad))
    assert r.returncode != 0 and "restart_policy" in r.stdout + r.stderr, r.stdout


def test_compose_services_fit_together():
    services = compose()["services"]
    assert {"gateway", "engine-1", "engine-2", "postgres", "prometheus", "grafana"} <= set(services)
    engines = {n: s for n, s in services.items() if str(s.get("image", "")).startswith("vllm/vllm-openai:")}
    models = set()
    for name, s in engines.items():
        devices = s["deploy"]["resources"]["reservations"]["devices"]
        assert devices and all("gpu" in d["capabilities"] for d in devices), name
        args = s["command"]
        tp = int(next(a.split("=")[1] for a in args if a.startswith("--tensor-parallel-size=")))
        gpus = devices[0].get("count") or len(devices[0]["device_ids"])
        assert gpus == tp, f"{name}: {gpus} GPUs reserved for tensor parallel {tp}"
        models.add(args[0])
    assert {
        "meta-llama/Llama-3.1-8B-Instruct",
        "meta-llama/Llama-3.3-70B-Instruct",
        "tiiuae/Falcon3-10B-Instruct",
        "tiiuae/falcon-180B",
    } <= models
    env = services["gateway"]["environment"]
    hosts = [urlparse(u).hostname for u in env["BATCHMT_ENGINE_URL"].split(",")]
    assert len(hosts) >= 2 and set(hosts) <= set(engines), hosts
    assert env["BATCHMT_DATABASE_URL"].startswith("postgresql://") and "@postgres:" in env["BATCHMT_DATABASE_URL"]
    for name, s in services.items():  # every bind-mounted file exists
        for vol in s.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("."):
                assert (DEPLOY / src).exists(), f"{name}: {src} does not exist"
    assert (DEPLOY / services["gateway"]["build"]["context"] / services["gateway"]["build"]["dockerfile"]).exists()


def test_compose_grafana_uses_the_dashboard_datasource_uid():
    ds = yaml.safe_load((DEPLOY / "compose" / "grafana-datasource.yml").read_text())["datasources"][0]
    ours = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"][0]
    assert ds["uid"] == ours["uid"] and ds["url"] == "http://prometheus:9090"


@pytest.mark.system
def test_promtool_checks_the_compose_scrape_config(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:  # `make unit` deselects the system marker; `make test` installs promtool first
        pytest.fail("promtool is not installed: run `bash scripts/install-test-deps.sh` (Debian package prometheus)")
    shutil.copy(DEPLOY / "compose" / "prometheus.yml", tmp_path / "prometheus.yml")
    for rules in ("rules.yml", "alerts.yml"):
        shutil.copy(DEPLOY / "prometheus" / rules, tmp_path / rules)
    r = run(promtool, "check", "config", str(tmp_path / "prometheus.yml"))
    assert r.returncode == 0 and "2 rule files found" in r.stdout, r.stdout + r.stderr


# --- Kubernetes ---------------------------------------------------------------------------------------------


def by_kind(objects: list[dict]) -> dict[tuple[str, str], dict]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def test_there_are_overlays():
    assert {p.name for p in OVERLAYS} >= {"llama-8b", "llama-70b-tp4"}


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_kubernetes_validate_strict_on_the_rendered_overlay(overlay, tmp_path):
    objects = render(overlay)
    out = tmp_path / f"{overlay.name}.yaml"
    out.write_text(yaml.safe_dump_all(objects))
    r = run(tool("kubernetes-validate"), "--strict", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    # the custom resources (ServiceMonitor, ScaledObject) have no schema there: checked below instead
    custom = [o for o in objects if o["apiVersion"].split("/")[0] in ("monitoring.coreos.com", "keda.sh")]
    assert r.stdout.count(" passed for resource ") == len(objects) - len(custom) >= 8, r.stdout


def test_kubernetes_validate_rejects_a_broken_manifest(tmp_path):
    objects = render(OVERLAYS[0])
    gw = by_kind(objects)[("Deployment", "batchmt-gateway")]
    gw["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/readyz"
    out = tmp_path / "broken.yaml"
    out.write_text(yaml.safe_dump_all(objects))
    r = run(tool("kubernetes-validate"), "--strict", "--quiet", str(out))
    assert r.returncode != 0 and "paht" in r.stdout, r.stdout


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_overlay_objects_fit_together(overlay):
    objs = render(overlay)
    k = by_kind(objs)
    assert all(o["metadata"].get("namespace") == "batchmt" for o in objs if o["kind"] != "Namespace")
    gw = k[("Deployment", "batchmt-gateway")]
    pod = gw["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" and c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["securityContext"]["runAsNonRoot"] is True and c["image"].startswith("registry.")
    env = {e["name"]: e for e in c["env"]}
    engine = k[("StatefulSet", "batchmt-engine")]
    svc = engine["spec"]["serviceName"]
    hosts = sorted(urlparse(u).hostname for u in env["BATCHMT_ENGINE_URL"]["value"].split(","))
    assert hosts == [f"batchmt-engine-{i}.{svc}" for i in range(engine["spec"]["replicas"])]
    assert k[("Service", svc)]["spec"]["clusterIP"] == "None"
    ec = engine["spec"]["template"]["spec"]["containers"][0]
    served = next(a.split("=", 1)[1] for a in ec["args"] if a.startswith("--served-model-name="))
    assert env["BATCHMT_SERVED_MODEL_NAME"]["value"] == served
    tp = int(next(a.split("=", 1)[1] for a in ec["args"] if a.startswith("--tensor-parallel-size=")))
    assert int(ec["resources"]["limits"]["nvidia.com/gpu"]) == tp
    assert ec["readinessProbe"]["httpGet"]["path"] == "/health"
    claim = next(v for v in engine["spec"]["template"]["spec"]["volumes"] if v["name"] == "model-cache")
    pvc = k[("PersistentVolumeClaim", claim["persistentVolumeClaim"]["claimName"])]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"], "the model cache is shared by every engine pod"
    assert env["BATCHMT_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "batchmt-database"
    assert k[("Service", "batchmt-postgres")]["spec"]["type"] == "ExternalName"
    labels = gw["spec"]["template"]["metadata"]["labels"]
    pdb = k[("PodDisruptionBudget", "batchmt-gateway")]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    scalers = [o for o in objs if o["kind"] in ("ScaledObject", "HorizontalPodAutoscaler")]
    assert len(scalers) == 1
    target = scalers[0]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "batchmt-gateway")
    if scalers[0]["kind"] == "ScaledObject":
        assert scalers[0]["apiVersion"] == "keda.sh/v1alpha1"
        queries = [t["metadata"]["query"] for t in scalers[0]["spec"]["triggers"] if t["type"] == "prometheus"]
        assert any("batchmt_queue_depth" in q for q in queries)
        assert any("batchmt_queue_wait_seconds_bucket" in q for q in queries)
    else:
        names = [m["pods"]["metric"]["name"] for m in scalers[0]["spec"]["metrics"] if m["type"] == "Pods"]
        assert names == ["batchmt_queue_depth"]
    monitors = [o for o in objs if o["kind"] == "ServiceMonitor"]
    assert {m["metadata"]["name"] for m in monitors} == {"batchmt-gateway", "batchmt-engine"}
    for m in monitors:
        svcs = [
            o
            for o in objs
            if o["kind"] == "Service"
            and m["spec"]["selector"]["matchLabels"].items() <= o["metadata"].get("labels", {}).items()
        ]
        assert svcs, f"{m['metadata']['name']} selects no Service"
        ports = {p["name"] for s in svcs for p in s["spec"]["ports"]}
        assert all(e["port"] in ports for e in m["spec"]["endpoints"])


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_the_python_renderer_agrees_with_kubectl_kustomize(overlay):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("no kubectl here: the overlays are rendered by tests/deploy/kustomize_lite.py only")
    r = run(kubectl, "kustomize", str(overlay))
    assert r.returncode == 0, r.stderr
    theirs = by_kind([d for d in yaml.safe_load_all(r.stdout) if d])
    assert by_kind(render(overlay)) == theirs
