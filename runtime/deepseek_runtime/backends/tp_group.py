"""Parallel serving: spawn this node's worker ranks, drive them, watch them.

Called by :func:`deepseek_runtime.backends.native.build_engine` when the layout has more
than one rank (``--tensor-parallel-size`` x ``--pipeline-parallel-size``, one command per
node, as vLLM does), and by ``serve`` on the worker nodes of a multi-node group
(:func:`run_worker_node`). The leader's ``serve`` process is rank 0 and owns the engine
(scheduler, KV manager, sampler); every other rank is a
``python -m deepseek_runtime.backends.tp_worker`` child of its node's ``serve``::

    serve (rank 0)                         worker (rank r)
    engine.step: chunks ──broadcast──▶     recv chunks
    run_step(chunks)     ◀─TP collectives / PP send, recv─▶   run_step(chunks)
    sample from the logits                 drop its copy of the logits

Under tensor parallelism alone every rank runs every layer on its shard and the logits
are all-gathered; with pipeline stages each rank runs its stage's layers on the step's
micro-batches (:mod:`~deepseek_runtime.backends.pp_schedule`) and the last stage sends
the logits to rank 0. Node ``n`` of ``nnodes`` runs global ranks ``[n L, (n + 1) L)``.

The step's chunks go out with ``broadcast_object_list`` on the world group (plain lists
of ints), whose timeout is long because workers wait there while the server is idle; the
layers' collectives and the stages' sends run on the TP / PP groups with the short
timeout, so a rank that stops answering mid-step is an error, not a hang. A peer that
dies closes its sockets, which gloo reports at once. :class:`WorkerSupervisor` also polls
the node's children, and the nodes of a multi-node group watch each other over the
liveness link (:mod:`~deepseek_runtime.backends.node_link`): when a rank or a node is
gone, the group fails and each ``serve`` exits non-zero a moment later (the leader after
answering the in-flight requests with an error), so readiness drops and the pods' owner
(the LeaderWorkerSet) restarts the group.
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
from .node_link import HealthServer, LeaderLink, connect_to_leader, link_port
from .pp_schedule import StageTimes, pipelined_step

log = logging.getLogger("deepseek_runtime.backends.tp_group")

IDLE_TIMEOUT = timedelta(days=7)
"""World group (step broadcast) timeout: workers wait there for as long as nobody asks."""
STEP_TIMEOUT = timedelta(seconds=30)
"""TP group timeout: a collective inside a step that a live peer never joins."""
EXIT_GRACE_S = 1.5
"""How long a failed group keeps serving errors to in-flight requests before exiting."""

WireChunk = tuple[list[int], int, list[int]]


class GroupFailedError(RuntimeError):
    """A rank of the parallel group is gone; this group cannot run another step."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True, slots=True)
class WorkerLaunch:
    """What every worker rank needs to load its shard exactly as rank 0 does.

    The world is ``tensor x pipeline`` ranks over ``nnodes`` nodes; node ``n`` holds
    global ranks ``[n L, (n + 1) L)`` with ``L = world / nnodes`` (:meth:`node_ranks`).
    """

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
    pipeline: int = 1
    nnodes: int = 1
    node_rank: int = 0

    @property
    def world_size(self) -> int:
        return self.tensor * self.pipeline

    @property
    def ranks_per_node(self) -> int:
        if self.world_size % self.nnodes:
            raise ValueError(
                f"--nnodes {self.nnodes} must divide the group's {self.world_size} ranks"
                f" (tensor {self.tensor} x pipeline {self.pipeline})"
            )
        return self.world_size // self.nnodes

    def node_ranks(self) -> range:
        """Global ranks this node runs (rank 0, the server, is the leader's first)."""
        per = self.ranks_per_node
        return range(self.node_rank * per, (self.node_rank + 1) * per)

    @property
    def micro_batches(self) -> int:
        """Micro-batches per step: one per stage keeps every stage busy in steady state."""
        return self.pipeline

    def parallel_config(self, rank: int) -> ParallelConfig:
        return ParallelConfig(
            tensor=self.tensor,
            pipeline=self.pipeline,
            expert=self.expert,
            rank=rank,
            world_size=self.world_size,
        )

    def command(self, rank: int) -> list[str]:
        local = rank - self.node_ranks().start
        cmd = [sys.executable, "-m", "deepseek_runtime.backends.tp_worker"]
        cmd += ["--model", self.model_dir, "--rank", str(rank), "--tensor", str(self.tensor)]
        cmd += ["--pipeline", str(self.pipeline), "--micro-batches", str(self.micro_batches)]
        cmd += ["--local-rank", str(local)]
        cmd += ["--node-ranks", str(self.ranks_per_node)]
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
    """Starts this node's worker ranks and fails the whole group when any of them exits.

    On the leader those are ranks ``1 .. L-1`` (rank 0 is this process); on a worker node
    all of its ``L`` ranks.

    Args:
        on_exit: what to do once a worker has died (default: exit this process with
            code 1 after :data:`EXIT_GRACE_S`); tests may pass their own.
    """

    def __init__(self, launch: WorkerLaunch, on_exit: Callable[[int], None] | None = None) -> None:
        self.launch = launch
        self.failed = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._leaving = False
        self._on_exit = on_exit or _exit_after_grace
        self.procs: list[tuple[int, subprocess.Popen[bytes]]] = []

    def start(self) -> None:
        ranks = [r for r in self.launch.node_ranks() if r != 0]
        for rank in ranks:
            self.procs.append((rank, subprocess.Popen(self.launch.command(rank))))
        log.info("parallel workers started", extra={"ranks": ranks})
        threading.Thread(target=self._watch, name="tp-supervisor", daemon=True).start()

    @property
    def alive(self) -> bool:
        return not self.failed.is_set() and all(p.poll() is None for _, p in self.procs)

    def _watch(self) -> None:
        while not self._stopping.is_set():
            for rank, proc in self.procs:
                code = proc.poll()
                if code is not None and not self._stopping.is_set():
                    self.fail(f"parallel rank {rank} exited", code=code)
                    return
            time.sleep(0.1)

    def fail(self, why: str, **fields: object) -> None:
        """The group cannot go on: stop the local workers and leave (``on_exit(1)``)."""
        with self._lock:  # the watcher and a node link may both report the loss
            if self._leaving:
                return
            self._leaving = True
        self.failed.set()  # the executor may have set it already (a failed step)
        log.error(f"{why}; stopping the group", extra=fields)
        self.stop()
        self._on_exit(1)

    def stop(self) -> None:
        """Terminate the remaining workers (idempotent; a normal shutdown is no failure)."""
        self._stopping.set()
        for _, proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for _, proc in self.procs:
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


def run_step(
    runner: ModelRunner,
    chunks: Sequence[ChunkLike],
    ctx: ParallelContext,
    micro_batches: int,
    times: StageTimes | None = None,
) -> torch.Tensor | None:
    """This rank's share of one step: the whole model's layers under TP alone, its
    stage's micro-batches under PP (:func:`~.pp_schedule.pipelined_step`)."""
    if ctx.pp.size == 1:
        return runner.execute(chunks)
    return pipelined_step(runner, chunks, ctx, micro_batches, times)


class TensorParallelExecutor:
    """Rank 0's :class:`~deepseek_runtime.engine.stages.ModelExecutor`: each step goes to
    every rank first, then runs on rank 0's own shard (or stage); the logits come back
    whole (all-gathered over TP, sent from the last pipeline stage)."""

    def __init__(
        self,
        runner: ModelRunner,
        supervisor: WorkerSupervisor,
        ctx: ParallelContext | None = None,
    ) -> None:
        self.runner = runner
        self.supervisor = supervisor
        self.ctx = ctx if ctx is not None else runner.parallel
        self.stage_times = StageTimes()
        """Rank 0's compute and wait time (the pipeline bubble, under PP)."""

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
            raise GroupFailedError("a parallel rank exited; the server is stopping")
        try:
            broadcast_step(to_wire(chunks))
            if self.ctx is None:
                return self.runner.execute(chunks)
            logits = run_step(
                self.runner,
                chunks,
                self.ctx,
                self.supervisor.launch.micro_batches,
                self.stage_times,
            )
        except RuntimeError as exc:  # gloo: a peer closed its connection or timed out
            self.supervisor.failed.set()
            raise GroupFailedError(f"parallel step failed: {exc}") from exc
        assert logits is not None  # rank 0 always gets the step's logits
        return logits


def share_cpu_threads(ranks_on_node: int, device: str) -> None:
    """On CPU, give each of the node's ranks its share of the cores."""
    if device == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // ranks_on_node))


def cuda_device(device: str, local_rank: int) -> str:
    """``cuda:<local rank>`` on CUDA (one GPU per rank of this node), else ``device``."""
    return f"cuda:{local_rank}" if device == "cuda" else device


def start_group(launch: WorkerLaunch) -> tuple[WorkerSupervisor, ParallelContext]:
    """Spawn this node's workers, join the world as rank 0 and return its supervisor and
    context (the leader of a multi-node group also opens the liveness link).

    A worker that dies while the group forms fails this process at once (the supervisor
    is already watching), instead of after the rendezvous timeout.
    """
    share_cpu_threads(launch.ranks_per_node, launch.device)
    supervisor = WorkerSupervisor(launch)
    if launch.nnodes > 1:
        link = LeaderLink(
            link_port(launch.master_port),
            lambda node: supervisor.fail("a worker node is gone", node_rank=node),
        )
        atexit.register(link.close)
    supervisor.start()
    atexit.register(supervisor.stop)
    config = launch.parallel_config(0)
    device = cuda_device(launch.device, 0)
    init_distributed(config, launch.master_addr, launch.master_port, device, IDLE_TIMEOUT)
    return supervisor, build_context(config, device, STEP_TIMEOUT)


def run_worker_node(launch: WorkerLaunch, host: str, port: int, link_timeout_s: float) -> int:
    """A multi-node group's node ``launch.node_rank > 0``: run its ranks, serve health.

    Returns (or exits with) 1 when a local rank exits or the leader goes away, and 0 on
    SIGTERM / SIGINT (the pod is being deleted).
    """
    share_cpu_threads(launch.ranks_per_node, launch.device)
    done = threading.Event()
    outcome = {"code": 0}

    def leave(code: int) -> None:
        outcome["code"] = code
        done.set()

    supervisor = WorkerSupervisor(launch, on_exit=leave)
    link_up = threading.Event()

    def lost() -> None:
        link_up.clear()
        supervisor.fail("the leader is gone", master_addr=launch.master_addr)

    def ready() -> bool:
        return link_up.is_set() and supervisor.alive

    health = HealthServer(host, port, ready)
    log.info("worker node serving health", extra={"node_rank": launch.node_rank, "port": port})
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: leave(0))
    supervisor.start()
    try:
        connect_to_leader(
            launch.master_addr,
            link_port(launch.master_port),
            launch.node_rank,
            link_timeout_s,
            lost,
        )
        link_up.set()
        done.wait()
    except TimeoutError as exc:
        log.error("cannot reach the leader", extra={"error": str(exc)})
        outcome["code"] = 1
    finally:
        supervisor.stop()
        health.close()
    return outcome["code"]
