"""Tensor-parallel serving on one node: spawn the worker ranks, drive them, watch them.

Called by :func:`deepseek_runtime.backends.native.build_engine` when
``--tensor-parallel-size`` is above 1 (one command per node, as vLLM does). The ``serve``
process is rank 0 and owns the engine (scheduler, KV manager, sampler); ranks
``1 .. T-1`` are ``python -m deepseek_runtime.backends.tp_worker`` children::

    serve (rank 0)                         worker (rank r)
    engine.step: chunks ──broadcast──▶     recv chunks
    runner.execute(chunks)    ◀─TP collectives─▶   runner.execute(chunks)
    sample from the (all-gathered) logits  drop its copy of the logits

The step's chunks go out with ``broadcast_object_list`` on the world group (plain lists
of ints), whose timeout is long because workers wait there while the server is idle; the
layers' collectives run on the TP group with the short timeout, so a rank that stops
answering mid-step is an error, not a hang. A peer that dies closes its sockets, which
gloo reports at once. :class:`WorkerSupervisor` also polls the children: when one exits,
the group fails, and this process exits non-zero a moment later (after the engine has
answered the in-flight requests with an error), so readiness drops and the pod's owner
restarts the group.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ..model.runner import ChunkLike, ModelRunner
from ..parallel.config import ParallelConfig
from ..parallel.groups import ParallelContext, build_context, init_distributed

log = logging.getLogger("deepseek_runtime.backends.tp_group")

IDLE_TIMEOUT = timedelta(days=7)
"""World group (step broadcast) timeout: workers wait there for as long as nobody asks."""
STEP_TIMEOUT = timedelta(seconds=30)
"""TP group timeout: a collective inside a step that a live peer never joins."""
EXIT_GRACE_S = 1.5
"""How long a failed group keeps serving errors to in-flight requests before exiting."""

WireChunk = tuple[list[int], int, list[int]]


class GroupFailedError(RuntimeError):
    """A rank of the tensor-parallel group is gone; this group cannot run another step."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True, slots=True)
class WorkerLaunch:
    """What every worker rank needs to load its shard exactly as rank 0 does."""

    model_dir: str
    tensor: int
    expert: bool
    master_addr: str
    master_port: int
    dtype: str
    device: str
    block_size: int
    num_blocks: int | None
    kv_cache_memory_bytes: int | None
    quantization: str

    def command(self, rank: int) -> list[str]:
        cmd = [sys.executable, "-m", "deepseek_runtime.backends.tp_worker"]
        cmd += ["--model", self.model_dir, "--rank", str(rank), "--tensor", str(self.tensor)]
        cmd += ["--master-addr", self.master_addr, "--master-port", str(self.master_port)]
        cmd += ["--dtype", self.dtype, "--device", self.device]
        cmd += ["--block-size", str(self.block_size), "--quantization", self.quantization]
        if self.num_blocks is not None:
            cmd += ["--num-blocks", str(self.num_blocks)]
        if self.kv_cache_memory_bytes is not None:
            cmd += ["--kv-cache-memory-bytes", str(self.kv_cache_memory_bytes)]
        return [*cmd, "--expert"] if self.expert else cmd


def _exit_after_grace(code: int) -> None:
    """Let the engine answer the in-flight requests with its error, then leave at once."""
    time.sleep(EXIT_GRACE_S)
    logging.shutdown()
    os._exit(code)


class WorkerSupervisor:
    """Starts ranks ``1 .. T-1`` and fails the whole group when any of them exits.

    Args:
        on_exit: what to do once a worker has died (default: exit this process with
            code 1 after :data:`EXIT_GRACE_S`); tests may pass their own.
    """

    def __init__(self, launch: WorkerLaunch, on_exit: Callable[[int], None] | None = None) -> None:
        self.launch = launch
        self.failed = threading.Event()
        self._stopping = threading.Event()
        self._on_exit = on_exit or _exit_after_grace
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        for rank in range(1, self.launch.tensor):
            self.procs.append(subprocess.Popen(self.launch.command(rank)))
        log.info("tensor-parallel workers started", extra={"ranks": self.launch.tensor - 1})
        threading.Thread(target=self._watch, name="tp-supervisor", daemon=True).start()

    def _watch(self) -> None:
        while not self._stopping.is_set():
            for rank, proc in enumerate(self.procs, start=1):
                code = proc.poll()
                if code is not None and not self._stopping.is_set():
                    self._fail(rank, code)
                    return
            time.sleep(0.1)

    def _fail(self, rank: int, code: int) -> None:
        self.failed.set()
        log.error(
            "tensor-parallel rank exited; stopping the group",
            extra={"rank": rank, "exit_code": code},
        )
        self.stop()
        self._on_exit(1)

    def stop(self) -> None:
        """Terminate the remaining workers (idempotent; a normal shutdown is no failure)."""
        self._stopping.set()
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in self.procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()


def to_wire(chunks: Sequence[ChunkLike]) -> list[WireChunk]:
    """The step's chunks as plain lists of ints (what crosses to the workers)."""
    return [(list(c.token_ids), int(c.start_pos), list(c.block_table)) for c in chunks]


def broadcast_step(chunks: list[WireChunk] | None) -> list[WireChunk] | None:
    """Rank 0 sends ``chunks`` (None: stop); every other rank receives and returns them."""
    box: list[list[WireChunk] | None] = [chunks]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class TensorParallelExecutor:
    """Rank 0's :class:`~deepseek_runtime.engine.stages.ModelExecutor`: each step goes to
    every rank first, then runs on rank 0's own shard; the logits are already whole."""

    def __init__(self, runner: ModelRunner, supervisor: WorkerSupervisor) -> None:
        self.runner = runner
        self.supervisor = supervisor

    @property
    def block_size(self) -> int:
        return self.runner.block_size

    @property
    def num_blocks(self) -> int:
        return self.runner.num_blocks

    @property
    def vocab_size(self) -> int:
        return self.runner.vocab_size

    def execute(self, chunks: Sequence[ChunkLike]) -> torch.Tensor:
        if self.supervisor.failed.is_set():
            raise GroupFailedError("a tensor-parallel rank exited; the server is stopping")
        try:
            broadcast_step(to_wire(chunks))
            return self.runner.execute(chunks)
        except RuntimeError as exc:  # gloo: a peer closed its connection or timed out
            self.supervisor.failed.set()
            raise GroupFailedError(f"tensor-parallel step failed: {exc}") from exc


def share_cpu_threads(tensor: int, device: str) -> None:
    """On CPU, give each of the node's ``tensor`` ranks its share of the cores."""
    if device == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // tensor))


def start_group(launch: WorkerLaunch) -> tuple[WorkerSupervisor, ParallelContext]:
    """Spawn the workers, join the world as rank 0 and return its supervisor and context.

    A worker that dies while the group forms fails this process at once (the supervisor
    is already watching), instead of after the rendezvous timeout.
    """
    share_cpu_threads(launch.tensor, launch.device)
    supervisor = WorkerSupervisor(launch)
    supervisor.start()
    atexit.register(supervisor.stop)
    config = ParallelConfig(
        tensor=launch.tensor, expert=launch.expert, rank=0, world_size=launch.tensor
    )
    device = "cuda:0" if launch.device == "cuda" else launch.device
    init_distributed(config, launch.master_addr, launch.master_port, device, IDLE_TIMEOUT)
    return supervisor, build_context(config, device, STEP_TIMEOUT)
