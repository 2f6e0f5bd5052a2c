"""The distribution: one `latentwire` namespace, nothing installed as a bare top-level module.

Installing the wheel and importing from it is tested in tests/client/test_light_install.py.
"""

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
