import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LATENTWIRE_DATA", REPO.parent / "shared" / "data"))
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data sets beside the checkout (../shared/data); the suite needs them."""
    if not (DATA / "fashion_mnist").is_dir():
        pytest.fail(f"real data sets not found at {DATA}; set LATENTWIRE_DATA")
    return DATA


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    # Unpacked IDX files go to one cache for the whole session, never the user's.
    monkeypatch.setenv("LATENTWIRE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("LATENTWIRE_DATA", str(DATA))
