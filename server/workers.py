"""Where models compute: one worker thread per hosted model, and processes for the upscaler
on a CPU. A model's batches never wait for another model's.

torch releases the GIL inside its kernels, so workers run side by side. Each worker has
its own CPU thread budget: with OpenMP, torch's thread count belongs to the thread that
sets it, so a small codec computes on one thread and neither setting leaks into another.
On CUDA each worker queues its kernels on a stream of its own, so one model's batches do
not serialize behind another's on the device (beyond what the device itself shares).

Between kernels, though, a model's Python code needs the GIL, and under load the event
loop holds it nearly all the time: two upscaler threads beside a thread that keeps the
GIL busy ran 4.4 windows a second where they run 16.5 alone (sr2x, 176x176 windows, this
2-core CPU). So on a CPU the upscaler runs in :class:`ProcessLanes`, processes of one
torch thread each, which share no GIL with the server.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger("latentwire.server")


class ModelWorker(Executor):
    """An executor of one thread with ``threads`` torch CPU threads (and, on CUDA, its own
    stream); the batcher of one hosted model runs its batches here."""

    def __init__(self, name: str, device: torch.device, threads: int, nice: int = 0) -> None:
        self.device, self.threads, self.nice = device, threads, nice
        self.stream: torch.cuda.Stream | None = None
        self._pool = ThreadPoolExecutor(
            1, thread_name_prefix=f"latentwire-{name}", initializer=self._start
        )

    def _start(self) -> None:
        # A thread's first torch call copies the process-wide count into it; make that
        # happen before setting ours, or a later first call would undo it.
        torch.get_num_threads()
        torch.set_num_threads(self.threads)
        if self.nice:
            stand_back(self.nice)
        if self.device.type == "cuda":
            self.stream = torch.cuda.Stream(self.device)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        return self._pool.submit(self._call, fn, args, kwargs)

    def _call(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        if self.stream is None:
            return fn(*args, **kwargs)
        with torch.cuda.stream(self.stream):
            result = fn(*args, **kwargs)
        self.stream.synchronize()  # results leave the worker ready to read
        return result

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)


def stand_back(nice: int) -> None:
    """Lower the calling thread's CPU priority to ``nice`` (on Linux a nice value belongs
    to a thread; threads it starts inherit it). Nothing happens where that is not so."""
    if sys.platform.startswith("linux"):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)


_lane_model: torch.nn.Module | None = None  # in a lane process: the model it runs


def _start_lane(folder: str, server_pid: int) -> None:
    from latentwire.shared.models.loading import load_model

    global _lane_model
    _die_with(server_pid)
    torch.set_num_threads(1)
    _lane_model = load_model(Path(folder), torch.device("cpu"))[0]
    _run_in_lane([np.zeros((8, 8, _lane_model.config.channels), dtype=np.uint8)])  # warm-up


def _die_with(server_pid: int) -> None:
    """Ask Linux to kill this lane when the server's process goes, however it goes (a
    SIGKILL leaves no time to stop lanes; orphans would hold memory, and its stdout)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
        if os.getppid() != server_pid:  # it went before the request was made
            os._exit(1)


def _started() -> None:
    """A task that returns once the lane running it has loaded its model."""


def _run_in_lane(windows: list[np.ndarray]) -> list[np.ndarray]:
    from latentwire.shared.upscaling import run_windows

    return run_windows(_lane_model, windows)


class ProcessLanes:
    """An upscaler's windows computed in ``count`` processes of one torch thread each (the
    model package loaded in every one), a part of the windows per process: side by side,
    windows of one thread each also beat one window on every thread (16.5 against 13.3
    windows a second on 2 cores), and a core taken by other work stalls one lane, not all
    of them at a barrier. A lane that dies (killed for memory, say) is replaced, and the
    batch it was running is run again once."""

    def __init__(self, folder: Path, count: int) -> None:
        self.folder, self.count = folder, count
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn, not fork: a forked child of a process with OpenMP threads can hang.
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(
            self.count,
            mp_context=context,
            initializer=_start_lane,
            initargs=(str(self.folder), os.getpid()),
        )
        # The pool starts a process for each task that finds none idle: start them all
        # now, models loaded, rather than in the middle of the first requests.
        for started in [pool.submit(_started) for _ in range(self.count)]:
            started.result()
        return pool

    def run(self, windows: list[np.ndarray]) -> list[np.ndarray]:
        """The upscales of ``windows``, in order, spread over the lanes."""
        lanes = min(self.count, len(windows))  # window i goes to lane i % lanes
        for attempt in (1, 2):
            try:
                parts = [windows[k :: self.count] for k in range(lanes)]
                done = [f.result() for f in [self._pool.submit(_run_in_lane, p) for p in parts]]
                return [done[i % lanes][i // lanes] for i in range(len(windows))]
            except BrokenProcessPool:
                log.error("an upscaler lane process died; starting new ones (try %d)", attempt)
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
        raise RuntimeError("the upscaler's lane processes keep dying")

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
