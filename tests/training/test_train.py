"""Real training runs on small slices of the real data sets."""

import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from latentwire.shared.models.loading import load_model
from latentwire.training.checkpoint import latest_checkpoint, load_checkpoint
from latentwire.training.data import load_datasets
from latentwire.training.export import export
from latentwire.training.metrics import evaluate_reconstruction
from latentwire.training.recipes.ae import TrainConfig, train
from tests.conftest import BIN

CLI = [sys.executable, "-m", "latentwire.shared.cli"]


def test_short_training_run_lowers_the_loss(tmp_path):
    cfg = TrainConfig(
        arch="convlinear",
        dataset="fashion-mnist",
        epochs=2,
        limit=2048,
        out=str(tmp_path),
        progress=False,
    )
    _, test_set, _ = load_datasets("fashion-mnist")
    torch.manual_seed(cfg.seed)
    from latentwire.shared.models import ImageShape, get_model

    untrained = get_model("convlinear", shape=ImageShape(1, 28, 28))
    before = evaluate_reconstruction(untrained, test_set, torch.device("cpu"), progress=False)
    model = train(cfg)
    after = evaluate_reconstruction(model, test_set, torch.device("cpu"), progress=False)
    assert after["mse"] < 0.5 * before["mse"]
    history = load_checkpoint(latest_checkpoint(tmp_path))["history"]
    assert history["train"][1] < history["train"][0]
    for name in ("metrics.json", "loss_curve.png", "reconstructions.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_clip_grad_bounds_the_gradient_adam_sees(tmp_path):
    """Adam divides by the gradient's own scale, so only a clip far below it shows: with
    the norm clipped to 1e-12 (under Adam's epsilon) the weights barely move."""
    from latentwire.shared.models import ImageShape, get_model

    moved = {}
    for clip in (None, 1e-12):
        cfg = TrainConfig(
            arch="convlinear",
            dataset="mnist",
            epochs=1,
            limit=512,
            clip_grad=clip,
            out=str(tmp_path / str(clip)),
            progress=False,
        )
        trained = train(cfg).state_dict()
        torch.manual_seed(cfg.seed)
        initial = get_model("convlinear", shape=ImageShape(1, 28, 28)).state_dict()
        moved[clip] = max((trained[k] - initial[k]).abs().max().item() for k in initial)
    assert moved[None] > 1e-3 and moved[1e-12] < 1e-5, moved


def _final_weights(run_dir):
    return load_checkpoint(latest_checkpoint(run_dir))["model"]


def test_resume_after_kill_equals_uninterrupted_run(tmp_path):
    """With a learning-rate drop after epoch 2, which the resumed run must also take."""
    args = [
        "train",
        "ae",
        "--arch",
        "conv",
        "--dataset",
        "mnist",
        "--limit",
        "3000",
        "--epochs",
        "3",
        "--lr-drop",
        "2",
        "--no-progress",
    ]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run([*CLI, *args, "--out", str(whole)], check=True, capture_output=True)

    proc = subprocess.Popen([*CLI, *args, "--out", str(killed)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while latest_checkpoint(killed) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # in the middle of epoch 2
    proc.wait()
    assert latest_checkpoint(killed).name.endswith("epoch0001.pt")

    subprocess.run([*CLI, *args, "--out", str(killed), "--resume"], check=True, capture_output=True)
    for run in (whole, killed):
        (group,) = load_checkpoint(latest_checkpoint(run))["optimizer"]["param_groups"]
        assert group["lr"] == pytest.approx(TrainConfig().lr / 10)
    a, b = _final_weights(whole), _final_weights(killed)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_cuda_run_resumes(tmp_path):
    """A checkpoint is loaded onto the training device, its RNG state included."""
    args = [*CLI, "train", "codec", "--limit", "640", "--device", "cuda", "--no-progress"]
    args += ["--out", str(tmp_path)]
    subprocess.run([*args, "--epochs", "1"], check=True, capture_output=True)
    subprocess.run([*args, "--epochs", "2", "--resume"], check=True, capture_output=True)
    assert latest_checkpoint(tmp_path).name.endswith("epoch0002.pt")


_SAVE_FOREVER = """
import sys, torch
from latentwire.training.checkpoint import save_checkpoint
for n in range(10**6):  # each save holds its number in every element
    save_checkpoint(sys.argv[1], 1, {"model": {"w": torch.full((4_000_000,), float(n))}})
    print(n, flush=True)
"""


def _signal_mid_save(run_dir, sig: int, prelude: str = ""):
    """Start ``prelude`` + a process saving checkpoints forever into ``run_dir``; after its
    first finished save, wait for the next save's temporary file and send ``sig`` then.
    Returns (process, the temporary files there were before, the last finished save)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", prelude + _SAVE_FOREVER, str(run_dir)],
        stdout=subprocess.PIPE,
        text=True,
    )
    last_saved = int(proc.stdout.readline())
    leftovers = set(run_dir.glob(".*.tmp"))
    deadline = time.monotonic() + 30
    while not set(run_dir.glob(".*.tmp")) - leftovers:
        assert time.monotonic() < deadline, "saves do not go through a temporary file"
        time.sleep(0.001)
    proc.send_signal(sig)
    return proc, leftovers, last_saved


def _assert_last_save_whole(run_dir, last_saved: int) -> None:
    weights = load_checkpoint(latest_checkpoint(run_dir))["model"]["w"]
    assert weights.numel() == 4_000_000
    assert torch.all(weights == weights[0]) and weights[0] >= last_saved


def test_a_kill_during_save_never_leaves_a_torn_checkpoint(tmp_path):
    for _ in range(4):
        proc, leftovers, last_saved = _signal_mid_save(tmp_path, signal.SIGKILL)
        proc.wait()
        assert len(set(tmp_path.glob(".*.tmp")) - leftovers) == 1  # the torn write
        _assert_last_save_whole(tmp_path, last_saved)


def test_sigterm_during_a_save_leaves_no_temporary_file(tmp_path):
    prelude = "from latentwire.training.loop import stop_on_sigterm\nstop_on_sigterm()\n"
    proc, _, last_saved = _signal_mid_save(tmp_path, signal.SIGTERM, prelude)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert not list(tmp_path.glob(".*.tmp"))
    _assert_last_save_whole(tmp_path, last_saved)


def test_ddp_two_cpu_processes_agree_and_only_rank0_writes(tmp_path):
    result = subprocess.run(
        [
            str(BIN / "torchrun"),
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "latentwire.training.recipes.ae",
            "--arch",
            "convlinear",
            "--dataset",
            "fashion-mnist",
            "--limit",
            "1024",
            "--epochs",
            "2",
            "--batch-size",
            "64",
            "--no-progress",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    digests = dict(re.findall(r"rank (\d) final weights sha256 ([0-9a-f]{64})", result.stderr))
    assert set(digests) == {"0", "1"}
    assert digests["0"] == digests["1"]
    # One writer: exactly one checkpoint per epoch and one "saved" line per epoch.
    assert sorted(p.name[-12:] for p in tmp_path.glob("ckpt-*.pt")) == [
        "epoch0001.pt",
        "epoch0002.pt",
    ]
    assert result.stderr.count("-> ckpt-") == 2
    # Each rank saw half of the slice per epoch, so both did real work on different data.
    assert "epoch 2/2" in result.stderr


def test_export_writes_a_package_that_reproduces_its_metrics(tmp_path):
    run = tmp_path / "run"
    command = "latentwire train ae --arch mlp --dataset mnist --epochs 1 --limit 1024"
    train(
        TrainConfig(
            arch="mlp",
            dataset="mnist",
            epochs=1,
            limit=1024,
            out=str(run),
            progress=False,
            command=command,
        )
    )
    manifest = export(latest_checkpoint(run), tmp_path / "pkg", "test-mlp")
    assert manifest.training["command"] == command
    model, loaded = load_model(tmp_path / "pkg")
    assert loaded.id == "test-mlp" and loaded.family == "mlp" and loaded.dataset == "mnist"
    assert loaded.parameters == sum(p.numel() for p in model.parameters())
    _, test_set, _ = load_datasets("mnist")
    metrics = evaluate_reconstruction(model, test_set, torch.device("cpu"), progress=False)
    assert metrics["psnr_db"] == pytest.approx(loaded.metrics["psnr_db"], abs=1e-3)

    result = subprocess.run([*CLI, "eval", str(tmp_path / "pkg")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert '"psnr_db"' in result.stdout


def test_hard_quantization_stage_keeps_the_analysis_and_runs_under_ddp(tmp_path):
    """The last stage trains synthesis and prior on rounded latents; the analysis is fixed
    (so DistributedDataParallel, which waits for every trainable parameter, still runs)."""
    small = ["--dataset", "fashion-mnist", "--filters", "8", "--latent-channels", "4"]
    small += ["--limit", "512", "--epochs", "1", "--no-progress"]
    first = subprocess.run(
        [*CLI, "train", "codec", *small, "--out", str(tmp_path / "soft")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    init = latest_checkpoint(tmp_path / "soft")
    torchrun = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2"]
    stage = ["--init", str(init), "--hard-quantization", "--out", str(tmp_path / "hard")]
    hard = subprocess.run(
        [*torchrun, "-m", "latentwire.training.recipes.codec", *small, *stage],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert hard.returncode == 0, hard.stderr[-3000:]
    digests = dict(re.findall(r"rank (\d) final weights sha256 ([0-9a-f]{64})", hard.stderr))
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"]
    before = load_checkpoint(init)["model"]
    after = load_checkpoint(latest_checkpoint(tmp_path / "hard"))["model"]
    for name, value in before.items():
        changed = not torch.equal(value, after[name])
        assert changed == (not name.startswith("analysis.")), name
