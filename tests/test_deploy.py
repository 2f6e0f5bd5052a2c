"""The deployment files, checked without a Docker engine: hadolint on the Dockerfile,
`docker-compose config` on the compose file, and the settings documented everywhere."""

import os
import re
import subprocess

import pytest
import tomllib

from latentwire.server.settings import Settings
from tests.conftest import BIN, REPO

COMPOSE = BIN.parent / "compose" / "bin" / "docker-compose"  # made by `make test`
SETTINGS = [f"LATENTWIRE_{name.upper()}" for name in Settings.model_fields]


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


@pytest.mark.parametrize("profile", [None, "cpu"])
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


def test_every_setting_is_documented():
    readme = (REPO / "README.md").read_text()
    env_file = (REPO / "latentwire.env").read_text()
    set_by_the_image = {"LATENTWIRE_HOST", "LATENTWIRE_PORT", "LATENTWIRE_MODEL_DIR"}
    for name in SETTINGS:
        assert f"| `{name}` |" in readme, f"{name} is missing from the README's table"
        if name not in set_by_the_image:
            assert f"# {name}=" in env_file, f"{name} is missing from latentwire.env"
    documented = set(re.findall(r"\| `(LATENTWIRE_[A-Z_0-9]+)` \|", readme))
    client_side = {"LATENTWIRE_CACHE", "LATENTWIRE_DATA", "LATENTWIRE_API_KEY"}
    assert documented - client_side <= set(SETTINGS), "the README names a setting that is gone"
