"""The base install decodes without torch: a fresh venv with only `pip install latentwire`."""

import subprocess
import sys

import numpy as np

from latentwire.client import DecoderStore, decode_array
from latentwire.shared.decoder_package import DECODER_NAME, DecoderPackage
from latentwire.shared.models.codec import encode_images
from latentwire.shared.models.loading import load_model
from latentwire.training.data import load_datasets
from tests.conftest import REPO


def test_base_install_decodes_an_ir_made_by_the_full_install(wheel, tiny_codec, tmp_path):
    model, _ = load_model(tiny_codec / "tiny")
    package = DecoderPackage.from_bytes((tiny_codec / "tiny" / DECODER_NAME).read_bytes())
    _, test_set, _ = load_datasets("fashion-mnist")
    ir = encode_images(model, package, test_set[7].unsqueeze(0))[0]
    expected = decode_array(ir, DecoderStore([tiny_codec]))

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    # The base dependencies only, at the pinned versions; no extras.
    subprocess.run(
        [py, "-m", "pip", "install", "-q", "-c", str(REPO / "constraints.txt"), str(wheel)],
        check=True,
    )
    (tmp_path / "ir.bin").write_bytes(ir)
    script = (
        "import importlib.util, sys, numpy as np\n"
        "assert importlib.util.find_spec('torch') is None, 'torch is installed'\n"
        "from latentwire.client import DecoderStore, decode\n"
        f"image = decode(open({str(tmp_path / 'ir.bin')!r}, 'rb').read(), "
        f"DecoderStore([{str(tiny_codec)!r}]))\n"
        "assert 'torch' not in sys.modules\n"
        # One namespace: no bare top-level modules came with the install.
        "assert all(importlib.util.find_spec(m) is None\n"
        "           for m in ('server', 'client', 'shared', 'training'))\n"
        "from latentwire.shared.package import list_packages\n"
        "assert list_packages(), 'the default models were not installed'\n"
        f"np.save({str(tmp_path / 'out.npy')!r}, np.asarray(image))\n"
    )
    subprocess.run([py, "-c", script], check=True, cwd=tmp_path)
    assert (venv / "bin" / "latentwire").exists()
    assert np.array_equal(np.load(tmp_path / "out.npy"), expected)
