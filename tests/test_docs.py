"""The docs that are made from the code are current: the settings table (docs/server.md),
the model zoo (docs/models.md) and latentwire.env. `make docs` regenerates them."""

import importlib.util
import re

import pytest

from tests.conftest import REPO

WHERE = {"settings": "docs/server.md", "models": "docs/models.md"}


@pytest.fixture(scope="module")
def generate():
    spec = importlib.util.spec_from_file_location("generate", REPO / "docs" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_generated_part_is_current(generate):
    parts = generate.parts()
    assert set(parts) == set(WHERE)
    for name, path in WHERE.items():
        text = (REPO / path).read_text()
        assert f"<!-- generated: {name} -->" in text, f"{path} lost its {name} markers"
        assert generate.fill(text, parts) == text, f"{path}: the {name} part is stale; make docs"
    env = (REPO / "latentwire.env").read_text()
    assert generate.env_file(env) == env, "latentwire.env is stale: make docs"


def test_the_check_can_fail(generate):
    stale = "<!-- generated: settings -->\n| old |\n<!-- end: settings -->\n"
    assert generate.fill(stale, generate.parts()) != stale


def test_every_setting_and_every_shipped_model_is_in_the_docs(generate):
    from latentwire.server.settings import Settings
    from latentwire.shared.package import list_packages, read_manifest

    server = (REPO / "docs" / "server.md").read_text()
    for name in Settings.model_fields:
        assert f"| `LATENTWIRE_{name.upper()}` |" in server
    models = (REPO / "docs" / "models.md").read_text()
    for folder in list_packages():
        assert f"| `{read_manifest(folder).id}` |" in models
    # Nothing documents a setting that is gone.
    documented = set(re.findall(r"`(LATENTWIRE_[A-Z_0-9]+)`", server))
    client_side = {"LATENTWIRE_CACHE", "LATENTWIRE_DATA", "LATENTWIRE_API_KEY"}
    assert documented - client_side <= {f"LATENTWIRE_{n.upper()}" for n in Settings.model_fields}
