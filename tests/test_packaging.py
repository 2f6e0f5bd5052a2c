"""The distribution: one `latentwire` namespace, nothing installed as a bare top-level module."""

import subprocess
import sys
import zipfile


def test_wheel_holds_only_the_latentwire_namespace(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {
        "latentwire",
        wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info",
    }
    for sub in ("server", "client", "shared", "training"):
        assert f"latentwire/{sub}/__init__.py" in names
    # The default models travel inside the package.
    assert any(n.startswith("latentwire/shared/zoo/") and n.endswith(".safetensors") for n in names)


def test_plain_install_imports_the_client_and_no_bare_modules(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True
    )
    check = (
        "import importlib.util as u, latentwire.client, latentwire.shared.package as p;"
        "assert all(u.find_spec(m) is None for m in ('server', 'client', 'shared', 'training'));"
        "assert p.list_packages(), 'no default models installed'"
    )
    subprocess.run([str(py), "-c", check], check=True, cwd=tmp_path)
    assert (venv / "bin" / "latentwire").exists()
