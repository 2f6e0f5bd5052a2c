"""Model workers: a CPU thread budget per worker thread; upscaler lanes in processes."""

import multiprocessing
import os
import signal
import threading

import numpy as np
import pytest
import torch

from latentwire.server.workers import ModelWorker, ProcessLanes
from latentwire.shared.models.loading import load_model
from latentwire.shared.package import find_package
from latentwire.shared.upscaling import run_windows


def test_each_worker_keeps_its_own_thread_budget():
    before = torch.get_num_threads()
    one = ModelWorker("one", torch.device("cpu"), 1)
    two = ModelWorker("two", torch.device("cpu"), 2)
    try:
        # Side by side, many times over: neither setting leaks into the other.
        for _ in range(20):
            a, b = one.submit(torch.get_num_threads), two.submit(torch.get_num_threads)
            assert (a.result(), b.result()) == (1, 2)
        assert one.submit(threading.current_thread).result() is not threading.current_thread()
    finally:
        one.shutdown()
        two.shutdown()
    assert torch.get_num_threads() == before


def test_a_worker_can_stand_back_for_the_upscaler():
    worker = ModelWorker("nice", torch.device("cpu"), 1, nice=3)
    try:
        assert worker.submit(os.getpriority, os.PRIO_PROCESS, 0).result() == 3
    finally:
        worker.shutdown()
    assert os.getpriority(os.PRIO_PROCESS, 0) == 0


@pytest.fixture(scope="module")
def windows():
    rng = np.random.default_rng(5)
    shapes = [(176, 176), (176, 176), (96, 80), (176, 176), (40, 176)]
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]


def test_lanes_give_the_pixels_of_one_process_and_survive_a_killed_lane(windows):
    folder = find_package("sr2x")
    expected = run_windows(load_model(folder)[0], windows)
    lanes = ProcessLanes(folder, 2)
    try:
        assert len(multiprocessing.active_children()) >= 2  # both started, models loaded
        for got, want in zip(lanes.run(windows), expected, strict=True):
            np.testing.assert_array_equal(got, want)
        assert [w.shape for w in lanes.run(windows[:1])] == [expected[0].shape]

        os.kill(multiprocessing.active_children()[0].pid, signal.SIGKILL)
        for got, want in zip(lanes.run(windows), expected, strict=True):  # run again, whole
            np.testing.assert_array_equal(got, want)
    finally:
        lanes.shutdown()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_workers_queue_their_kernels_on_streams_of_their_own():
    one = ModelWorker("one", torch.device("cuda"), 1)
    two = ModelWorker("two", torch.device("cuda"), 1)
    try:
        streams = [w.submit(torch.cuda.current_stream).result() for w in (one, two)]
        assert streams[0] != streams[1]
        assert torch.cuda.default_stream() not in streams  # the default one syncs with all
        x = torch.ones(1024, device="cuda")
        assert one.submit(lambda: float((x * 2).sum())).result() == 2048.0
    finally:
        one.shutdown()
        two.shutdown()
