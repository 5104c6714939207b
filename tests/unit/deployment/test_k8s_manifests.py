"""deploy/k8s: every overlay renders with `kubectl kustomize`, validates offline against the
Kubernetes JSON schemas (kubernetes-validate, strict) and has the probes, GPU and HPA it needs.

Built-in kinds are checked with kubernetes-validate's bundled schemas for KUBERNETES_VERSION;
the ServiceMonitor CRD with deploy/schemas/ (a subset of the prometheus-operator schema)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = sorted(p.parent.name for p in (K8S / "overlays").glob("*/kustomization.yaml"))
KUBERNETES_VERSION = "1.31.0"
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"):
        ROOT / "deploy" / "schemas" / "servicemonitor-monitoring.coreos.com-v1.json",
}


def render(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not installed; run `make setup` (scripts/install_system_deps.sh "
                    "installs it)")
    result = subprocess.run([kubectl, "kustomize", str(K8S / "overlays" / overlay)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(request.param)


def by_kind(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in documents if d["kind"] == kind]


def test_overlays_exist() -> None:
    assert OVERLAYS == ["dev", "production"]


def test_every_document_validates_offline(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, documents = rendered
    for document in documents:
        crd = CRD_SCHEMAS.get((document["apiVersion"], document["kind"]))
        if crd is not None:
            jsonschema.validate(document, json.loads(crd.read_text(encoding="utf-8")))
        else:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_schema_validation_catches_a_typo() -> None:
    deployment = by_kind(render("dev"), "Deployment")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_deployment_has_gpu_probes_and_read_only_models(
    rendered: tuple[str, list[dict[str, Any]]],
) -> None:
    _, documents = rendered
    pod = by_kind(documents, "Deployment")[0]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert "model_ready.py" in container["readinessProbe"]["exec"]["command"][1]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["READY_MODELS"] == "digits"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["models"]["readOnly"] is True
    assert mounts["dshm"]["mountPath"] == "/dev/shm"


def test_service_monitor_and_dashboard(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, documents = rendered
    monitor = by_kind(documents, "ServiceMonitor")[0]
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    dashboards = [d for d in by_kind(documents, "ConfigMap")
                  if d["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    dashboard = json.loads(dashboards[0]["data"]["triton-dashboard.json"])
    text = json.dumps(dashboard)
    for metric in ("nv_inference_count", "nv_inference_queue_duration_us",
                   "nv_inference_compute_infer_duration_us", "nv_inference_request_failure"):
        assert metric in text
    assert all("by (model)" in t["expr"] for p in dashboard["panels"][:6] for t in p["targets"])


def test_hpa_scales_on_queue_time_where_present() -> None:
    production = render("production")
    hpa = by_kind(production, "HorizontalPodAutoscaler")[0]
    assert hpa["spec"]["minReplicas"] == 3
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == (
        "triton_queue_time_per_request_us")
    rules = by_kind(production, "ConfigMap")
    adapter = next(d for d in rules if d["metadata"]["name"] == "prometheus-adapter-triton-rules")
    config = yaml.safe_load(adapter["data"]["config.yaml"])
    assert config["rules"][0]["name"]["as"] == "triton_queue_time_per_request_us"
    assert by_kind(render("dev"), "HorizontalPodAutoscaler") == []
