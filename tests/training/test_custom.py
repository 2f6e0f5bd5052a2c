"""The one-command custom codec (training/custom.py) on a tiny real folder: the staged run
exports a servable package and its report, a run killed in any stage resumes to the same
package, the report's figures are what the server gives, and ``inspect`` draws a figure."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from latentwire.training.custom import parse_qualities, schedule
from tests.server.conftest import running_server

SIDE = 16


@pytest.fixture(scope="module")
def folder(tmp_path_factory, data_dir) -> Path:
    """48 grayscale 16x16 crops of three real photos (BSD100, never trained on)."""
    out = tmp_path_factory.mktemp("crops")
    rng = np.random.default_rng(0)
    for path in sorted((data_dir / "bsd100").iterdir())[:3]:
        with Image.open(path) as photo:
            gray = photo.convert("L")
            for i in range(16):
                left = int(rng.integers(0, gray.width - SIDE))
                top = int(rng.integers(0, gray.height - SIDE))
                gray.crop((left, top, left + SIDE, top + SIDE)).save(out / f"{path.stem}-{i}.png")
    return out


def command(folder: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "latentwire.shared.cli",
        "train",
        "codec",
        "--dataset",
        f"folder:{folder}",
        "--channels",
        "1",
        "--height",
        str(SIDE),
        "--width",
        str(SIDE),
        "--name",
        "crops",
        "--no-progress",
        "--out",
        str(out),
        *extra,
    ]


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread: the same floats every run


@pytest.fixture(scope="module")
def run(folder, tmp_path_factory) -> Path:
    """The plain one-command run, uninterrupted."""
    out = tmp_path_factory.mktemp("run") / "crops"
    done = subprocess.run(command(folder, out), env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "No unused functions to remove" not in done.stderr + done.stdout  # quiet export
    return out


def test_the_one_command_run_exports_a_package_and_its_report(run):
    plan = json.loads((run / "plan.json").read_text())
    manifest = json.loads((run / "crops-q3" / "manifest.json").read_text())
    assert manifest["code"] == 1 and manifest["quality"] == 3
    assert manifest["dataset"].startswith("folder:")
    assert manifest["training"]["command"].startswith("latentwire train codec --dataset folder:")
    assert manifest["metrics"]["test_images"] == plan["test_images"] > 0
    assert manifest["training"]["init"]["init"]["package"] == plan["levels"][0]["start"]
    for name in ("report.md", "report.json", "rd.png", "reconstructions.png", "bits.png"):
        assert (run / "report" / name).stat().st_size > 0, name
    report = json.loads((run / "report" / "report.json").read_text())
    ours = [r for r in report["rows"] if r["codec"] == "latentwire"]
    assert [r["setting"] for r in ours] == ["crops-q3"]
    assert {r["codec"] for r in report["rows"]} >= {"WebP", "JPEG", "AVIF"}
    assert ours[0]["bytes"] == pytest.approx(manifest["metrics"]["ir_bytes"], abs=0.01)
    # At most keep-last checkpoints in each stage.
    assert all(len(list(p.glob("ckpt-*.pt"))) <= 3 for p in (run / "train" / "q3").iterdir())


def _kill_when(proc: subprocess.Popen, ready) -> None:
    deadline = time.monotonic() + 600
    while not ready():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_a_run_killed_in_each_stage_resumes_to_the_same_package(run, folder, tmp_path):
    out = tmp_path / "crops"
    stages = out / "train" / "q3"
    killed = subprocess.Popen(command(folder, out), env=ENV, stderr=subprocess.PIPE, text=True)
    _kill_when(killed, lambda: len(list((stages / "main").glob("ckpt-*.pt"))) >= 2)
    again = command(folder, out, "--resume")
    killed = subprocess.Popen(again, env=ENV, stderr=subprocess.PIPE, text=True)
    _kill_when(killed, lambda: any((stages / "hard").glob("ckpt-*.pt")))
    refused = subprocess.run(command(folder, out), env=ENV, capture_output=True, text=True)
    assert refused.returncode == 1 and "--resume" in refused.stderr
    done = subprocess.run(again, env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    first = json.loads((run / "crops-q3" / "manifest.json").read_text())
    resumed = json.loads((out / "crops-q3" / "manifest.json").read_text())
    assert resumed["weights_sha256"] == first["weights_sha256"]
    assert resumed["decoder_digest"] == first["decoder_digest"]
    assert resumed["metrics"] == first["metrics"]


def test_the_report_is_what_the_server_gives(run, folder, tmp_path):
    """Every held-out image through the real server hosting the package, decoded by the
    light client: the same bytes and PSNR as the report's; ``inspect --server`` too."""
    from latentwire.client import Client
    from latentwire.shared.codec import Codec
    from latentwire.training.metrics import psnr
    from latentwire.training.report import held_out_images

    report = json.loads((run / "report" / "report.json").read_text())
    (ours,) = [r for r in report["rows"] if r["codec"] == "latentwire"]
    images = held_out_images(Codec.load(run / "crops-q3"))
    with running_server({"LATENTWIRE_MODEL_DIR": str(run)}) as (url, _):
        hosted = {m["id"]: m for m in httpx.get(f"{url}/models").json()}
        assert hosted["crops-q3"]["code"] == 1
        with Client(url) as client:
            irs = [client.encode(Image.fromarray(i), model="crops-q3") for i in images]
            decoded = [np.asarray(client.decode(ir)) for ir in irs]  # decoder from /models
        figure = tmp_path / "served.png"
        inspect = ["inspect", str(sorted(folder.iterdir())[0]), "--model", "crops-q3"]
        inspect += ["--server", url, "-o", str(figure)]
        done = subprocess.run(
            [sys.executable, "-m", "latentwire.shared.cli", *inspect],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0 and "code 1" in done.stdout, done.stderr
        assert figure.stat().st_size > 0
    assert np.mean([len(ir) for ir in irs]) == pytest.approx(ours["bytes"], abs=1e-9)
    measured = np.mean([psnr(a, b) for a, b in zip(images, decoded, strict=True)])
    assert measured == pytest.approx(ours["psnr_db"], abs=1e-6)


def test_inspect_draws_an_image_and_an_ir(run, folder, tmp_path):
    image = sorted(folder.iterdir())[0]
    figure = tmp_path / "figure.png"
    cli = [sys.executable, "-m", "latentwire.shared.cli", "inspect"]
    done = subprocess.run(
        [*cli, str(image), "--model", "crops-q3", "--model-dir", str(run), "-o", str(figure)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "crops-q3" in done.stdout and " dB" in done.stdout
    with Image.open(figure) as drawn:
        assert drawn.width > 4 * 192 and drawn.height >= 192
    ir = tmp_path / "one.lw"
    local = ["encode", "--local", "--model", "crops-q3", "--model-dir", str(run)]
    encoded = subprocess.run(
        [sys.executable, "-m", "latentwire.shared.cli", *local, str(image), "-o", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert encoded.returncode == 0, encoded.stderr
    (tmp_path / f"{image.stem}.lw").rename(ir)
    done = subprocess.run(
        [*cli, str(ir), "--model-dir", str(run), "-o", str(tmp_path / "ir.png")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "(crops-q3, code 1)" in done.stdout  # the IR names its model by code 1
    assert (tmp_path / "ir.png").stat().st_size > 0
    # A receiver: a bare decode(ir) finds the package through $LATENTWIRE_MODEL_DIR.
    script = (
        f"from latentwire.client import decode; print(decode(open({str(ir)!r}, 'rb').read()).size)"
    )
    env = {**os.environ, "LATENTWIRE_MODEL_DIR": str(run)}
    shown = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert shown.stdout.strip() == f"({SIDE}, {SIDE})", shown.stderr


def test_the_schedule_grows_with_the_folder_and_shrinks_passes():
    small, big = schedule(2_000, 32, 32), schedule(60_000, 32, 32)
    assert small[0] == big[0] == 64  # 64 images of 32x32 a batch
    assert big[1] > small[1]  # more steps for more images ...
    assert big[1] * big[0] / 60_000 < small[1] * small[0] / 2_000  # ... in fewer passes
    assert schedule(2_000, 64, 64)[0] == 16  # bigger images, smaller batches
    assert small[2] == -(-small[1] // 10)  # the hard stage: a tenth of the main one


def test_qualities_parse_and_refuse():
    assert parse_qualities("3") == [3]
    assert parse_qualities("1-3,6") == [1, 2, 3, 6]
    for bad in ("0", "1-9", "x", ""):
        with pytest.raises(ValueError):
            parse_qualities(bad)


def test_a_positional_prior_is_resampled_to_another_latent_grid():
    from latentwire.shared.models import ImageShape, get_model
    from latentwire.training.recipes.codec import initialize

    def codec(*shape: int):
        small = dict(transform="gdn", filters=8, latent_channels=4, prior_contexts=2)
        return get_model("factorized", shape=ImageShape(*shape), positional_prior=True, **small)

    shipped, wider = codec(1, 28, 28), codec(3, 32, 40)
    initialize(wider, shipped.state_dict())
    old = shipped.prior.biases[0].view(4, 7, 7, 2, -1)
    new = wider.prior.biases[0].view(4, 8, 10, 2, -1)
    assert torch.equal(new[:, 0, 0], old[:, 0, 0]) and torch.equal(new[:, 7, 9], old[:, 6, 6])
    x = torch.rand(1, 3, 32, 40) * 2 - 1
    gray = x.mean(1, keepdim=True)
    # The RGB start sees the mean of the channels, as the gray codec saw the gray image.
    assert torch.allclose(wider.analysis[0](x), shipped.analysis[0](gray), atol=1e-5)


def test_export_prints_one_line_and_logs_the_exporters_notes(run, tmp_path):
    from latentwire.training.checkpoint import latest_checkpoint

    checkpoint = latest_checkpoint(run / "train" / "q3" / "hard")
    export = [sys.executable, "-m", "latentwire.shared.cli", "export", str(checkpoint)]
    done = subprocess.run(
        [*export, "-o", str(tmp_path / "again"), "--id", "crops-again", "--code", "5"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"wrote {tmp_path / 'again'}: crops-again")
    assert "unused" in (checkpoint.parent / "export.log").read_text()  # the details, kept
    assert json.loads((tmp_path / "again" / "manifest.json").read_text())["code"] == 5
    refused = subprocess.run(
        [*export, "-o", str(tmp_path / "bad"), "--code", "33"],
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 1 and "1 to 32" in refused.stderr
    assert not (tmp_path / "bad").exists()
