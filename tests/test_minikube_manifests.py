"""Offline checks of the minikube testbed: manifests, values, scripts and generated objects."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.config import load_config
from infra.minikube import render

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "infra" / "minikube"
CLONE = HERE / "DeathStarBench"
SERVE_CONFIG = "/etc/deeprest/deeprest.yaml"


def yaml_files() -> list[Path]:
    """Every YAML file of the testbed (a DeathStarBench clone excluded)."""
    found = [*HERE.rglob("*.yaml"), *HERE.rglob("*.yml")]
    return sorted(p for p in found if CLONE not in p.parents and "generated" not in p.parts)


def manifest_objects() -> list[dict[str, Any]]:
    """The Kubernetes objects under manifests/."""
    objects = []
    for path in sorted((HERE / "manifests").glob("*.yaml")):
        objects += [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return objects


def find(kind: str, name: str) -> dict[str, Any]:
    """The one manifest object of this kind and name."""
    hits = [o for o in manifest_objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, f"expected one {kind}/{name}, found {len(hits)}"
    return hits[0]


def deeprest_container() -> dict[str, Any]:
    containers = find("Deployment", "deeprest")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["deeprest"]
    container: dict[str, Any] = containers[0]
    return container


def embedded_config() -> dict[str, Any]:
    text = find("ConfigMap", "deeprest-config")["data"]["deeprest.yaml"]
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def test_every_yaml_parses_and_objects_are_named() -> None:
    files = yaml_files()
    assert {p.name for p in files} >= {"deeprest.yaml", "otel-collector.yaml"}
    for path in files:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        assert docs, f"{path} is empty"
        for doc in docs:
            if path.parent.name == "manifests":
                assert doc.get("apiVersion") and doc.get("kind"), path
                assert doc["metadata"]["name"], path
                if doc["kind"] != "Namespace":
                    assert doc["metadata"].get("namespace") == "deeprest", (path, doc["kind"])


def test_deployment_serves_the_mounted_config() -> None:
    container = deeprest_container()
    words = shlex.split(" ".join(container.get("command", []) + container.get("args", [])))
    assert "serve" in words and words[words.index("serve") + 1] == "--config"
    assert words[words.index("serve") + 2] == SERVE_CONFIG
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {
        v["name"]: v for v in find("Deployment", "deeprest")["spec"]["template"]["spec"]["volumes"]
    }
    config_volume = volumes["config"]["configMap"]["name"]
    assert config_volume == "deeprest-config"
    assert str(Path(mounts["config"]) / "deeprest.yaml") == SERVE_CONFIG
    # The data dir of the config lives on the OpenEBS-backed claim.
    claim = volumes["data"]["persistentVolumeClaim"]["claimName"]
    pvc = find("PersistentVolumeClaim", claim)
    assert pvc["spec"]["storageClassName"] == "openebs-hostpath"
    assert Path(embedded_config()["data_dir"]).is_relative_to(mounts["data"])
    # The model path the start script probes is on the same volume.
    assert "/var/lib/deeprest/model/manifest.json" in " ".join(container["args"])
    assert Path("/var/lib/deeprest/model").is_relative_to(mounts["data"])
    assert find("Deployment", "deeprest")["spec"]["strategy"]["type"] == "Recreate"


def test_embedded_config_passes_the_exporter_validation(tmp_path: Path) -> None:
    raw = embedded_config()
    container = deeprest_container()
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    # The token file is the mounted Secret; here it is replaced by a local file to read.
    assert Path(raw["api_token_file"]).parent == Path(mounts["api-token"])
    (tmp_path / "token").write_text("secret\n")
    raw["api_token_file"] = "token"
    path = tmp_path / "deeprest.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    assert config.model is None  # collection first; the start script adds --model
    assert config.api_token == "secret"
    assert config.window_seconds == 60.0
    assert config.traffic_source == "otlp"
    assert config.prometheus.url == "http://prometheus-operated.monitoring.svc:9090"


def test_component_mapping_names_dsb_services(tmp_path: Path) -> None:
    raw = embedded_config()
    raw.pop("api_token_file")
    path = tmp_path / "deeprest.yaml"
    path.write_text(yaml.safe_dump(raw))
    from exporter.prom import UsageQueries

    queries = UsageQueries(load_config(path).prometheus, window=60.0)
    assert queries.component({"container": "nginx-thrift"}) == "nginx-web-server"
    assert queries.component({"container": "compose-post-service"}) == "compose-post-service"
    assert queries.component({"container": "post-storage-mongodb"}) == "post-storage-mongodb"
    assert queries.component({"container": "alpine-container"}) is None
    assert queries.component({"container": "jaeger"}) is None
    cpu = queries.usage("cpu")
    assert cpu is not None and 'namespace="socialnetwork"' in cpu and "[120s]" in cpu


def test_service_port_matches_config_and_monitor() -> None:
    port = embedded_config()["port"]
    service = find("Service", "deeprest")
    ports = service["spec"]["ports"]
    assert [p["port"] for p in ports] == [port]
    container_ports = {p["name"]: p["containerPort"] for p in deeprest_container()["ports"]}
    assert container_ports[ports[0]["targetPort"]] == port
    pod_labels = find("Deployment", "deeprest")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    monitor = find("ServiceMonitor", "deeprest")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [ports[0]["name"]]
    # The alert rules expect a job named deeprest (or deeprest-NAME): the Service name, unless
    # the monitor renames it.
    assert "jobLabel" not in monitor["spec"]
    assert 'job=~"deeprest.*"' in (render.RULES_DIR / "deeprest-alerts.yaml").read_text()
    assert re.fullmatch("deeprest.*", service["metadata"]["name"])


def test_collector_exports_to_the_deeprest_service() -> None:
    config = yaml.safe_load(find("ConfigMap", "otel-collector-config")["data"]["config.yaml"])
    pipeline = config["service"]["pipelines"]["traces"]
    assert pipeline["receivers"] == ["jaeger"]
    [exporter] = pipeline["exporters"]
    assert exporter.split("/")[0] == "otlphttp"
    service = find("Service", "deeprest")
    port = service["spec"]["ports"][0]["port"]
    expected = f"http://{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local:{port}/v1/traces"
    assert config["exporters"][exporter]["traces_endpoint"] == expected
    # DeathStarBench's Jaeger clients send compact Thrift over UDP to the collector's Service.
    agent = yaml.safe_load((HERE / "values" / "socialnetwork.yaml").read_text())["global"]["jaeger"]
    host, agent_port = agent["localAgentHostPort"].rsplit(":", 1)
    collector = find("Service", "otel-collector")
    assert host.startswith(f"{collector['metadata']['name']}.{collector['metadata']['namespace']}.")
    udp = {p["port"] for p in collector["spec"]["ports"] if p["protocol"] == "UDP"}
    assert int(agent_port) in udp
    assert config["receivers"]["jaeger"]["protocols"]["thrift_compact"]["endpoint"].endswith(
        agent_port
    )
    assert agent["samplerType"] == "const" and agent["samplerParam"] == 1


def test_rules_and_dashboards_render() -> None:
    files = render.rule_files()
    assert {p.name for p in files} == {"deeprest-alerts.yaml", "deeprest-recording.yaml"}
    rules = list(yaml.safe_load_all(render.render("rules")))
    assert len(rules) == len(files)
    for path, obj in zip(files, rules, strict=True):
        assert obj["kind"] == "PrometheusRule" and obj["metadata"]["name"] == path.stem
        assert obj["spec"]["groups"] == yaml.safe_load(path.read_text())["groups"]
    dashboards = list(yaml.safe_load_all(render.render("dashboards")))
    assert len(dashboards) == len(list(render.DASHBOARDS_DIR.glob("*.json")))
    for obj in dashboards:
        assert obj["metadata"]["labels"]["grafana_dashboard"] == "1"
        [(name, text)] = obj["data"].items()
        assert (render.DASHBOARDS_DIR / name).read_text() == text
    [values] = yaml.safe_load_all(render.render("alertmanager"))
    assert values["alertmanager"]["config"]["route"]["receiver"]
    # The stack's values select DeepRest's objects and keep the cAdvisor series DeepRest reads.
    kps = yaml.safe_load((HERE / "values" / "kube-prometheus-stack.yaml").read_text())
    assert kps["prometheus"]["prometheusSpec"]["ruleSelectorNilUsesHelmValues"] is False
    sidecar = kps["grafana"]["sidecar"]["dashboards"]
    assert sidecar["label"] == "grafana_dashboard" and sidecar["labelValue"] == "1"
    # cAdvisor only: the kubelet's /metrics/resource has the same series names and labels.
    assert kps["kubelet"]["serviceMonitor"]["cAdvisor"] is True
    assert kps["kubelet"]["serviceMonitor"]["resource"] is False
    dropped = " ".join(
        r["regex"] for r in kps["kubelet"]["serviceMonitor"]["cAdvisorMetricRelabelings"]
    )
    for series in (
        "container_spec_",
        "container_fs_writes",
        "container_cpu_usage",
        "container_memory_working_set",
    ):
        assert series not in dropped


def test_bad_rule_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("not: rules\n")
    with pytest.raises(ValueError, match="groups"):
        render.prometheus_rule(bad)


@pytest.mark.parametrize("script", ["up.sh", "down.sh", "load.sh", "train.sh"])
def test_shell_scripts_parse(script: str) -> None:
    path = HERE / script
    text = path.read_text()
    assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # Every file the script names under the testbed exists.
    for ref in (
        "manifests/deeprest.yaml",
        "manifests/otel-collector.yaml",
        "values/socialnetwork.yaml",
        "values/kube-prometheus-stack.yaml",
        "values/openebs.yaml",
        "dsb_locustfile.py",
        "Dockerfile",
    ):
        if ref in text:
            assert (HERE / ref).is_file(), ref


def test_load_script_stops_when_the_port_forward_fails(tmp_path: Path) -> None:
    """A kubectl whose port-forward fails at once (port taken, no pod): load.sh says so and
    exits 1 within seconds, instead of sending Locust to a closed port."""
    kubectl = tmp_path / "kubectl"
    kubectl.write_text('#!/bin/sh\ncase "$*" in *port-forward*) exit 1;; esac\nexit 0\n')
    kubectl.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "LOCAL_PORT": "1"}
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(HERE / "load.sh"), "run", "diurnal"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert "no port-forward to svc/nginx-thrift on 127.0.0.1:1" in result.stderr
    assert time.monotonic() - started < 20


def test_dockerfile_installs_the_package_and_cpu_torch() -> None:
    text = (HERE / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    assert "--index-url https://download.pytorch.org/whl/cpu torch==2.13.0" in text
    assert "pip install ." in text
    image = deeprest_container()["image"]
    up = (HERE / "up.sh").read_text()
    assert f'IMAGE="${{IMAGE:-{image}}}"' in up and 'image build -t "$IMAGE"' in up
    # the deployment runs the image just built, whatever IMAGE names, and restarts onto it
    name = deeprest_container()["name"]
    assert f'set image deployment/deeprest {name}="$IMAGE"' in up
    assert up.index("rollout restart deployment/deeprest") < up.index(
        "rollout status deployment/deeprest"
    )
    for copied in ("estimator", "exporter", "loadgen", "infra/local"):
        assert (ROOT / copied).is_dir()


def test_build_context_holds_only_what_the_image_copies() -> None:
    """The image is built from the repository root: `.dockerignore` leaves everything out but
    the Dockerfile's COPY sources, so a DeathStarBench clone under infra/minikube/ (and git
    history, caches, a demo's output) is not sent to minikube's builder on every build."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    allowed = {p[1:] for p in patterns if p.startswith("!")}
    copied = set()
    for line in (HERE / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            copied.update(p.rstrip("/") for p in line.split()[1:-1] if not p.startswith("--"))
    assert copied == allowed, copied ^ allowed
    assert not any(str(CLONE.relative_to(ROOT)).startswith(a) for a in allowed)


def test_dsb_locustfile_declares_users_for_the_wrk2_api() -> None:
    if shutil.which("locust") is None:
        pytest.skip("locust is not installed")
    # Locust patches the process with gevent on import, so it runs in child processes.
    listed = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(HERE / "dsb_locustfile.py"), "--list"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split()[-1:] == ["DeathStarBench"], listed.stdout
    probe = (
        "import json; from infra.minikube import dsb_locustfile as d;"
        "from loadgen.shapes import API_NAMES;"
        "print(json.dumps({'routes': d.DSB_ROUTES, 'apis': API_NAMES,"
        " 'form': d.compose_form(7, 'hi', ['1', '2'])}))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60, cwd=ROOT, check=True)  # fmt: skip
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert all(path.startswith("/wrk2-api/") for _, path in found["routes"].values())
    assert set(found["routes"]) | {"upload_media"} == set(found["apis"])
    assert found["form"]["username"] == "username_7"
    assert json.loads(found["form"]["media_types"]) == ["png", "png"]


def render_chart_resources(resources: str) -> dict[str, Any]:
    """A container as DeathStarBench's chart (at up.sh's DSB_REF) renders `global.resources`:
    its _baseDeployment.tpl and _baseNginxDeployment.tpl write `resources:` 8 columns in, then
    `{{ tpl $.Values.global.resources $ | nindent 6 | trim }}` 10 columns in."""
    nindented = "\n" + "\n".join(" " * 6 + line for line in resources.split("\n"))
    manifest = (
        "containers:\n"
        '      - name: "compose-post-service"\n'
        "        image: docker.io/deathstarbench/social-network-microservices:latest\n"
        "        resources:\n"
        "          " + nindented.strip() + "\n"
    )
    [container] = yaml.safe_load(manifest)["containers"]
    rendered: dict[str, Any] = container
    return rendered


def test_socialnetwork_resources_render_into_the_container() -> None:
    values = yaml.safe_load((HERE / "values" / "socialnetwork.yaml").read_text())
    container = render_chart_resources(values["global"]["resources"])
    assert set(container) == {"name", "image", "resources"}, container
    assert container["resources"] == {
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"cpu": "1", "memory": "512Mi"},
    }
    # The chart's own README example renders the same way.
    example = 'requests: \n      memory: "64Mi"\n      cpu: "250m"\n    limits:\n      cpu: "2"'
    assert render_chart_resources(example)["resources"]["limits"] == {"cpu": "2"}


def fake_cluster_tools(tmp_path: Path, status_rc: int = 1) -> tuple[dict[str, str], Path]:
    """minikube, kubectl, helm, git and python3 stand-ins that log their arguments (one call a
    line, `tool args...`) and succeed; `minikube status` exits with `status_rc`."""
    log = tmp_path / "calls.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("minikube", "kubectl", "helm", "git", "python3"):
        script = bin_dir / tool
        script.write_text(
            "#!/bin/sh\n"
            f'echo "{tool} $*" >> "{log}"\n'
            f'case "{tool} $1" in "minikube status") exit {status_rc};; esac\n'
            "exit 0\n"
        )
        script.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PYTHON": str(bin_dir / "python3"),
        "DSB_DIR": str(tmp_path / "dsb"),
    }
    return env, log


def test_up_starts_minikube_on_containerd(tmp_path: Path) -> None:
    """The kubelet's cAdvisor labels pods' series with their container under containerd; under
    minikube's default docker runtime (cri-dockerd) it leaves container="" (kubernetes/minikube
    #16742, kubernetes/kubernetes#111077), which DeepRest's usage selector drops."""
    env, log = fake_cluster_tools(tmp_path)
    result = subprocess.run(
        ["bash", str(HERE / "up.sh")], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    [start] = [c for c in log.read_text().splitlines() if c.startswith("minikube start")]
    assert "--container-runtime=containerd" in start.split(), start
    assert 'container!=""' in embedded_config()["prometheus"]["selector"]


def test_down_waits_for_openebs_volumes_then_restores_the_default_class(tmp_path: Path) -> None:
    """OpenEBS's provisioner deletes released volumes: down.sh waits for them to go before it
    uninstalls OpenEBS, and gives minikube's `standard` class its default annotation back."""
    env, log = fake_cluster_tools(tmp_path)
    polled = tmp_path / "polled"
    kubectl = tmp_path / "bin" / "kubectl"
    kubectl.write_text(
        "#!/bin/sh\n"
        f'echo "kubectl $*" >> "{log}"\n'
        'case "$*" in "get pv"*)\n'
        f'  if [ ! -e "{polled}" ]; then touch "{polled}"; echo pvc-1234; fi;;\n'
        "esac\n"
        "exit 0\n"
    )
    result = subprocess.run(
        ["bash", str(HERE / "down.sh")], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    polls = [i for i, c in enumerate(calls) if c.startswith("kubectl get pv")]
    assert len(polls) == 2, calls  # one volume left at first, none at the second look
    [namespaces] = [i for i, c in enumerate(calls) if "delete namespace monitoring" in c]
    [openebs] = [i for i, c in enumerate(calls) if c.startswith("helm uninstall openebs")]
    assert namespaces < polls[0] and polls[-1] < openebs
    [restore] = [i for i, c in enumerate(calls) if c.startswith("kubectl patch storageclass")]
    assert "standard" in calls[restore] and 'is-default-class":"true"' in calls[restore]
    assert restore > openebs
