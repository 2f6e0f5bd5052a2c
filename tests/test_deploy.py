"""The deployment files, checked without a Docker engine: hadolint on the Dockerfile,
`docker-compose config` on the compose file, the Kubernetes manifests against the API
schemas, and the nginx template's routes."""

import os
import re
import subprocess

import kubernetes_validate
import pytest
import tomllib
import yaml

from latentwire.server.settings import Settings
from tests.conftest import BIN, REPO

COMPOSE = BIN.parent / "compose" / "bin" / "docker-compose"  # made by `make test`


def test_hadolint_finds_nothing_in_the_dockerfile():
    result = subprocess.run(
        [str(BIN / "hadolint"), "--config", str(REPO / ".hadolint.yaml"), "Dockerfile"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def compose():
    if not COMPOSE.exists():
        pytest.fail(f"{COMPOSE} is missing: `make test` installs it (.ci/compose-requirements.txt)")
    return COMPOSE


@pytest.mark.parametrize("profile", [None, "cpu", "routed"])
def test_the_compose_file_is_valid(compose, profile):
    args = [str(compose), "--project-directory", str(REPO), "-f", "docker-compose.yml"]
    if profile:
        args += ["--profile", profile]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LATENTWIRE_")}
    result = subprocess.run([*args, "config"], cwd=REPO, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    config = result.stdout
    assert "driver: nvidia" in config and "- gpu" in config
    assert "/models:ro" in config and "restart: unless-stopped" in config
    assert "TORCH_INDEX: https://download.pytorch.org/whl/cpu" in config
    if profile == "routed":  # nginx in front of replicas by task, with the shipped template
        assert "latentwire.conf.template:/etc/nginx/templates/default.conf.template" in config
        assert "LATENTWIRE_TASKS: codec" in config and "upscale,generate" in config


def test_a_broken_compose_file_is_caught(compose, tmp_path):
    """The check can fail: an unknown key makes `config` refuse the file."""
    broken = (REPO / "docker-compose.yml").read_text().replace("restart:", "restrat:")
    (tmp_path / "docker-compose.yml").write_text(broken)
    (tmp_path / "latentwire.env").write_text("")
    result = subprocess.run(
        [str(compose), "config", "-q"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode != 0 and "restrat" in result.stderr


def test_the_image_runs_the_command_the_tests_start():
    """CMD is `latentwire serve`; the tests run the same entry point (running_server)."""
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.findall(r"^CMD (.+)$", dockerfile, re.M) == ['["latentwire", "serve"]']
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["latentwire"] == "latentwire.shared.cli:main"
    conftest = (REPO / "tests" / "server" / "conftest.py").read_text()
    assert '"-m", "latentwire.shared.cli", "serve"' in conftest
    assert re.search(r"^USER 10001$", dockerfile, re.M), "the server runs as a non-root user"
    assert "HEALTHCHECK" in dockerfile and "/readyz" in dockerfile


KUBERNETES = REPO / "docs" / "deploy" / "kubernetes"
NGINX_TEMPLATE = REPO / "docs" / "deploy" / "nginx" / "latentwire.conf.template"
KUBERNETES_VERSION = "1.30.0"  # the oldest release the manifests are meant for
# The task a route needs (health checks: any replica).
ROUTE_TASKS = {
    "/encode": "codec",
    "/models": "codec",
    "/upscale": "upscale",
    "/generate": "generate",
    "/": "codec",  # the page, which calls /encode and /models
    "/client": "codec",
}


def kubernetes_objects() -> list[dict]:
    objects = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return objects


def of_kind(kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in kubernetes_objects() if o["kind"] == kind}


def test_the_kubernetes_manifests_match_the_api_schemas():
    objects = kubernetes_objects()
    assert {o["kind"] for o in objects} >= {
        "Deployment",
        "Service",
        "Ingress",
        "HorizontalPodAutoscaler",
    }
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_a_broken_manifest_is_caught():
    deployment = next(iter(of_kind("Deployment").values()))
    broken = {**deployment, "spec": {**deployment["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_kubernetes_manifests_hold_together():
    deployments, services = of_kind("Deployment"), of_kind("Service")
    hosts = {}  # deployment -> the tasks its pods host
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]
        assert pod["metadata"]["labels"] == deployment["spec"]["selector"]["matchLabels"]
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        (container,) = pod["spec"]["containers"]
        assert not container["image"].endswith(":latest") and ":" in container["image"]
        env = {e["name"]: e["value"] for e in container["env"]}
        hosts[name] = set(Settings(tasks=env["LATENTWIRE_TASKS"]).hosted_tasks)
        assert container["ports"] == [{"name": "http", "containerPort": 8000}]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
        resources = container["resources"]
        if "nvidia.com/gpu" in resources.get("requests", {}):
            assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"]
            assert env["LATENTWIRE_DEVICE"].startswith("cuda")
    for hpa in of_kind("HorizontalPodAutoscaler").values():
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment" and target["name"] in deployments
        # The autoscaler owns the count; a replicas field would fight it on every apply.
        assert "replicas" not in deployments[target["name"]]["spec"]
    behind = {}  # service -> deployment
    for name, service in services.items():
        matches = [
            d
            for d, obj in deployments.items()
            if obj["spec"]["template"]["metadata"]["labels"] == service["spec"]["selector"]
        ]
        assert len(matches) == 1 and service["spec"]["ports"][0]["targetPort"] == "http"
        behind[name] = matches[0]
    (ingress,) = of_kind("Ingress").values()
    routes = {}
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["port"] == {"name": "http"}
            routes[path["path"]] = hosts[behind[backend["name"]]]
    for route, task in ROUTE_TASKS.items():
        assert task in routes[route], f"{route} goes to replicas that do not host {task}"
    assert nginx_routes() == routes, "the Ingress and the nginx template route differently"


def nginx_routes() -> dict[str, set[str]]:
    """Each path the nginx template routes, and the tasks of the pool it goes to (the
    compose variant: codec replicas host codec; upscale replicas upscale and generate)."""
    pools = {"latentwire_codec": {"codec"}, "latentwire_upscale": {"upscale", "generate"}}
    text = NGINX_TEMPLATE.read_text()
    found = re.findall(r"location (?:= )?(/\w*)\s+\{ proxy_pass http://(\w+); \}", text)
    return {path: pools[pool] for path, pool in found}


def test_every_route_a_client_uses_is_routed():
    from latentwire.server.app import create_app

    served = set(create_app(Settings()).openapi()["paths"])  # /metrics is not in it
    routed = nginx_routes()
    assert served >= {"/encode", "/upscale", "/generate", "/models", "/readyz"}
    for path in served:
        assert any(path == p or path.startswith(p + "/") for p in routed), path
