"""The deployment files, checked offline (no Docker engine or Kubernetes API here): they parse,
they name each other consistently, and every setting they pass is one the worker knows."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from delivery_service.cluster import render_nginx
from delivery_service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SETTINGS = {f"EXAMSERVER_{name.upper()}" for name in Settings.model_fields}


def manifests() -> dict[str, dict[str, Any]]:
    """Every Kubernetes object by kind (one of each here)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            assert {"apiVersion", "kind", "metadata"} <= doc.keys(), path
            assert doc["metadata"]["name"], path
            found[doc["kind"]] = doc
    return found


def test_the_kustomization_lists_every_manifest_and_only_those() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    present = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == present


def test_the_kubernetes_objects_are_all_there() -> None:
    assert set(manifests()) == {
        "Namespace", "ConfigMap", "Secret", "Job", "Deployment", "Service", "Ingress",
        "HorizontalPodAutoscaler", "PodDisruptionBudget",
    }  # fmt: skip


def test_the_deployment_probes_drains_and_is_selected_by_everything_else() -> None:
    objects = manifests()
    deployment = objects["Deployment"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (container,) = pod["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    ports = {p["name"] for p in container["ports"]}

    service = objects["Service"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
    pdb = objects["PodDisruptionBudget"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = objects["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["minReplicas"] >= 2
    backend = objects["Ingress"]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    envs = {ref[next(iter(ref))]["name"] for ref in container["envFrom"]}
    assert envs == {objects["ConfigMap"]["metadata"]["name"], objects["Secret"]["metadata"]["name"]}
    job = objects["Job"]["spec"]["template"]["spec"]["containers"][0]
    assert job["command"] == ["examserver", "migrate"]


def test_the_probed_paths_exist_in_the_app() -> None:
    from delivery_service.app import create_app

    app = create_app(Settings(environment="test"))
    assert {"/healthz", "/readyz", "/metrics"} <= set(app.openapi()["paths"])


def test_every_setting_the_deploy_files_pass_is_a_real_one() -> None:
    objects = manifests()
    passed = set(objects["ConfigMap"]["data"]) | set(objects["Secret"]["stringData"])
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for service in compose["services"].values():
        passed |= {k for k in service.get("environment", {}) if k.startswith("EXAMSERVER_")}
    assert len(passed) > 5
    assert passed <= SETTINGS, passed - SETTINGS


def test_compose_migrates_once_before_three_workers_behind_nginx() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    workers = sorted(name for name in services if name.startswith("worker"))
    assert workers == ["worker1", "worker2", "worker3"]
    assert services["migrate"]["command"] == ["examserver", "migrate"]
    assert services["migrate"]["restart"] == "no"
    for name in workers:
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert services[name]["environment"]["EXAMSERVER_JWT_SECRET"].startswith("${")
    assert services["nginx"]["volumes"] == ["./deploy/nginx.conf:/etc/nginx/nginx.conf:ro"]
    upstreams = re.findall(r"server (\w+):8000", (ROOT / "deploy" / "nginx.conf").read_text())
    assert upstreams == workers


def test_the_image_runs_as_a_user_with_a_healthcheck() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"(?m)^USER (\S+)", dockerfile)
    assert users
    assert users[-1] not in ("root", "0")
    assert "HEALTHCHECK" in dockerfile
    assert re.search(r'(?m)^CMD \["examserver", "serve"', dockerfile)


def test_the_cluster_renders_the_same_nginx_config_for_loopback(tmp_path: Path) -> None:
    template = (ROOT / "deploy" / "nginx.conf").read_text()
    text = render_nginx(template, listen=8123, upstreams=[9001, 9002], prefix=tmp_path)
    assert re.findall(r"server 127\.0\.0\.1:(\d+)", text) == ["9001", "9002"]
    assert "worker1" not in text
    assert "listen 127.0.0.1:8123;" in text
    assert f"pid {tmp_path / 'nginx.pid'};" in text
    # Everything else is the production file's: the WebSocket handling above all.
    for line in ("proxy_set_header Upgrade $http_upgrade;", "proxy_read_timeout 75s;"):
        assert line in text


def test_a_template_without_upstream_servers_is_refused(tmp_path: Path) -> None:
    from delivery_service.cluster import ClusterError

    with pytest.raises(ClusterError, match="no `server workerN:8000` lines"):
        render_nginx("http {}", listen=1, upstreams=[2], prefix=tmp_path)


def test_the_first_admin_job_feeds_a_secret_to_create_user_on_stdin() -> None:
    job = yaml.safe_load((K8S / "one-off" / "create-admin-job.yaml").read_text())
    assert job["kind"] == "Job"
    container = job["spec"]["template"]["spec"]["containers"][0]
    command = " ".join(container["command"])
    assert "examserver create-user" in command
    assert "--role admin <" in command  # stdin, never the password in argv
    mounts = {m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert mounts == set(volumes)
    assert all("secret" in v for v in volumes.values())
