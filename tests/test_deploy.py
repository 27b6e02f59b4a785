"""compose.yaml, the Dockerfiles and deploy/k8s, checked without a container engine: they parse, and
what they name (services, ports, environment variables, config maps, secrets, volumes) exists and
agrees with what the code reads."""

from __future__ import annotations

import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
SERVICES = ("gateway", "predictor", "scheduler", "worker")


@cache
def env_names(service: str) -> frozenset[str]:
    """The ECOSERVE_* variables a service reads: its --help names one per flag."""
    out = subprocess.run([sys.executable, "-m", f"services.{service}", "--help"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120, env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"})
    assert out.returncode == 0, out.stderr
    return frozenset(re.findall(r"\[env (ECOSERVE_[A-Z0-9_]+)\]", out.stdout))


@cache
def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


@cache
def dockerfile(service: str) -> dict[str, object]:
    """ENV, EXPOSE, HEALTHCHECK and CMD of services/<service>/Dockerfile (continuation lines joined)."""
    text = (ROOT / "services" / service / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    env = dict(re.findall(r"(ECOSERVE_[A-Z0-9_]+)=(\S+)", " ".join(ln for ln in lines if ln.startswith("ENV "))))
    expose = [p for ln in lines if ln.startswith("EXPOSE ") for p in ln.split()[1:]]
    return {"env": env, "expose": expose, "health": [ln for ln in lines if ln.startswith("HEALTHCHECK ")],
            "cmd": [ln for ln in lines if ln.startswith("CMD ")]}


def _service_of(spec: dict) -> str | None:
    build = spec.get("build")
    if isinstance(build, dict):
        return Path(build["dockerfile"]).parent.name
    image = spec.get("image", "")
    return image.split("/")[1].split(":")[0] if image.startswith("ecoserve/") else None


def _env(spec: dict) -> dict[str, str]:
    return {k: str(v) for k, v in (spec.get("environment") or {}).items()}


def _is_one_shot(name: str) -> bool:
    services = compose()["services"]
    return services[name].get("restart") == "no" and any(
        (s.get("depends_on") or {}).get(name, {}).get("condition") == "service_completed_successfully"
        for s in services.values())


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfiles_run_their_service_expose_its_ports_and_check_health(service: str) -> None:
    d = dockerfile(service)
    assert d["cmd"] == [f'CMD ["python", "-m", "services.{service}"]']
    assert (ROOT / "services" / service / "__main__.py").is_file()
    assert len(d["health"]) == 1 and "ecoserve.healthcheck" in d["health"][0]
    assert set(d["env"]) <= env_names(service), set(d["env"]) - env_names(service)
    ports = {v for k, v in d["env"].items() if k.endswith("_PORT")}
    assert set(d["expose"]) == ports
    if ports:  # the health check probes one of the service's own ports
        assert any(f"127.0.0.1:{port}" in d["health"][0] for port in ports), d["health"]


def test_every_compose_service_has_an_image_and_a_health_check_and_its_dependencies_exist() -> None:
    services = compose()["services"]
    assert {"redis", "predictor", "scheduler", "worker", "worker-cpu", "gateway"} <= set(services)
    for name, spec in services.items():
        assert "image" in spec or "build" in spec, name
        if "build" in spec:
            assert (ROOT / spec["build"]["context"] / spec["build"]["dockerfile"]).is_file(), name
        assert "healthcheck" in spec or _is_one_shot(name), f"{name} has no health check"
        for dep in spec.get("depends_on") or {}:
            assert dep in services, f"{name} depends on unknown {dep}"


def test_compose_environment_is_what_the_services_read_and_addresses_agree() -> None:
    services = compose()["services"]

    def port_of(name: str) -> str:
        service = _service_of(services[name])
        return _env(services[name]).get("ECOSERVE_PORT") or dockerfile(service)["env"]["ECOSERVE_PORT"]

    for name, spec in services.items():
        service = _service_of(spec)
        env = _env(spec)
        if service is None or _is_one_shot(name):
            continue
        assert set(env) <= env_names(service), (name, set(env) - env_names(service))
        if "ECOSERVE_SCHEDULER" in env:
            host, port = env["ECOSERVE_SCHEDULER"].split(":")
            assert _service_of(services[host]) == "scheduler" and port == port_of(host)
        if "ECOSERVE_PREDICTOR" in env:
            host, port = env["ECOSERVE_PREDICTOR"].split(":")
            assert _service_of(services[host]) == "predictor" and port == port_of(host)
        if "ECOSERVE_REDIS_URL" in env:
            host_port = env["ECOSERVE_REDIS_URL"].removeprefix("redis://").split("/")[0]
            assert host_port == "redis:6379" and services["redis"]["image"].startswith("redis:")
        for check in spec["healthcheck"]["test"]:
            for port in re.findall(r":(\d+)", check):
                assert port in {port_of(name) if "ECOSERVE_PORT" in env else "",
                                env.get("ECOSERVE_HTTP_PORT")}, (name, check)
    gateway = _env(services["gateway"])
    published = {p.split(":")[1] for p in services["gateway"]["ports"]}
    assert published == {gateway["ECOSERVE_HTTP_PORT"], gateway["ECOSERVE_GRPC_PORT"]}


def test_compose_has_a_gpu_worker_and_a_cpu_profile() -> None:
    services = compose()["services"]
    gpu, cpu = services["worker"], services["worker-cpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert _env(gpu)["ECOSERVE_DEVICE"] == "cuda" and gpu["profiles"] == ["gpu"]
    assert _env(cpu)["ECOSERVE_DEVICE"] == "cpu" and cpu["profiles"] == ["cpu"]
    assert "resources" not in cpu.get("deploy", {})  # no GPU reservation on the CPU profile


@cache
def k8s_objects() -> list[dict]:
    objects = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") != "Kustomization":
                assert doc.get("apiVersion") and doc.get("kind") and doc.get("metadata", {}).get("name"), path
                objects.append(doc)
    return objects


def _by_kind(kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in k8s_objects() if o["kind"] == kind}


def _workloads() -> dict[str, dict]:
    return {**_by_kind("Deployment"), **_by_kind("StatefulSet")}


def _containers(workload: dict) -> list[dict]:
    return workload["spec"]["template"]["spec"]["containers"]


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def test_workloads_select_their_pods_and_every_container_has_probes() -> None:
    assert {"gateway", "predictor", "scheduler", "worker", "redis"} <= set(_workloads())
    for name, w in _workloads().items():
        labels = w["spec"]["template"]["metadata"]["labels"]
        assert w["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
        for c in _containers(w):
            assert "readinessProbe" in c and "livenessProbe" in c, (name, c["name"])
            named = {p["name"] for p in c.get("ports", [])}
            for probe in (c["readinessProbe"], c["livenessProbe"]):
                port = (probe.get("httpGet") or probe.get("tcpSocket") or probe.get("grpc") or {}).get("port")
                assert port is None or port in named or port in {p["containerPort"] for p in c["ports"]}
    scheduler = _workloads()["scheduler"]["spec"]
    assert scheduler["replicas"] == 1 and scheduler["strategy"]["type"] == "Recreate"  # never two at once
    assert _containers(_workloads()["worker"])[0]["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_services_reach_container_ports_and_autoscalers_their_deployments() -> None:
    for name, svc in _by_kind("Service").items():
        targets = [w for w in _workloads().values()
                   if svc["spec"]["selector"].items() <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert len(targets) == 1, name
        ports = [p for c in _containers(targets[0]) for p in c.get("ports", [])]
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in {p["name"] for p in ports} | {p["containerPort"] for p in ports}, name
    hpas = _by_kind("HorizontalPodAutoscaler")
    assert {h["spec"]["scaleTargetRef"]["name"] for h in hpas.values()} == {"gateway", "predictor"}
    for hpa in hpas.values():
        ref = hpa["spec"]["scaleTargetRef"]
        assert ref["kind"] == "Deployment" and ref["name"] in _by_kind("Deployment")
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_config_maps_secrets_volumes_and_environment_are_consistent() -> None:
    maps, secrets, claims = _by_kind("ConfigMap"), _by_kind("Secret"), _by_kind("PersistentVolumeClaim")
    services = _by_kind("Service")
    readers: dict[str, set[str]] = {}
    for name, w in _workloads().items():
        pod = w["spec"]["template"]["spec"]
        for volume in pod.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
        for c in _containers(w):
            service = c["image"].split("/")[1].split(":")[0] if c["image"].startswith("ecoserve/") else None
            for source in c.get("envFrom", []):
                ref = source["configMapRef"]["name"]
                assert ref in maps
                if service:
                    readers.setdefault(ref, set()).update(env_names(service))
            for var in c.get("env", []):
                if service:
                    assert var["name"] in env_names(service), (name, var["name"])
                secret = var.get("valueFrom", {}).get("secretKeyRef")
                if secret:
                    assert secret["key"] in secrets[secret["name"]]["stringData"]
    for name, cm in maps.items():
        unread = set(cm["data"]) - readers.get(name, set())
        assert not unread, f"{name}: no service reads {unread}"
        data = cm["data"]
        for key, service in (("ECOSERVE_SCHEDULER", "scheduler"), ("ECOSERVE_PREDICTOR", "predictor")):
            host, port = data[key].split(":")
            assert host in services and int(port) in {p["port"] for p in services[host]["spec"]["ports"]}
            env = {v["name"]: v.get("value") for v in _containers(_workloads()[service])[0]["env"]}
            assert env["ECOSERVE_PORT"] == port
        host, port = data["ECOSERVE_REDIS_URL"].removeprefix("redis://").split("/")[0].split(":")
        assert int(port) in {p["port"] for p in services[host]["spec"]["ports"]}
