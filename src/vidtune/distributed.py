"""One run over many processes with torch.distributed: ranks, frame splits, gathers, errors.

Design notes (formulas, layouts, why): docs/internals.md, section `vidtune.distributed`.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

WATCH_INTERVAL = 0.2  # seconds between two looks of the watchdog at the store
ACK_WAIT = 5.0  # how long a failing rank waits for the others to see its message before it exits
ERROR_KEY = "vidtune/error"
ACK_KEY = "vidtune/error_acks"
DEFAULT_TIMEOUT = 1800.0


@dataclass(frozen=True)
class World:
    """This process's place in the run: rank in [0, size), size processes, local_rank on its node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """More than one process (collectives needed)."""
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes the run folder and prints."""
        return self.rank == 0


def env_world(environ: dict[str, str] | None = None) -> World:
    """The world torchrun describes in the environment (RANK, WORLD_SIZE, LOCAL_RANK); one process without."""
    env = os.environ if environ is None else environ
    size = int(env.get("WORLD_SIZE", "1") or 1)
    if size <= 1:
        return World()
    return World(rank=int(env["RANK"]), size=size, local_rank=int(env.get("LOCAL_RANK", "0") or 0))


def current() -> World:
    """The world of the initialised process group, else one process."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0") or 0))


# ---------------------------------------------------------------------------------------------
# Launch and errors


@dataclass
class _Session:
    """What a launched process keeps: the store client the watchdog reads and the watchdog's stop flag."""

    world: World
    store: Any
    stop: threading.Event
    failing: threading.Event
    thread: threading.Thread | None = None


_SESSION: _Session | None = None


def backend_for(device: str) -> str:
    """NCCL when the run computes on CUDA, gloo otherwise (`model.device`: auto, cpu, cuda...)."""
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return "nccl" if cuda else "gloo"


def timeout_seconds() -> float:
    """Collective timeout: VIDTUNE_DIST_TIMEOUT seconds (default 1800)."""
    return float(os.environ.get("VIDTUNE_DIST_TIMEOUT", DEFAULT_TIMEOUT))


@contextlib.contextmanager
def launch(device: str = "auto") -> Iterator[World]:
    """Join torchrun's process group for the block (nothing without torchrun) and watch for other
    ranks' errors. On success every rank meets at a barrier and the group is destroyed; on an
    error the group is left as it is (`fail` tells the others; a barrier would wait for them)."""
    global _SESSION
    world = env_world()
    if not world.enabled or dist.is_initialized():
        yield current()
        return
    backend = backend_for(device)
    if backend == "nccl":
        torch.cuda.set_device(world.local_rank)
    timeout = datetime.timedelta(seconds=timeout_seconds())
    dist.init_process_group(backend, timeout=timeout)
    store = dist.distributed_c10d._get_default_store()
    session = _Session(world, store, threading.Event(), threading.Event())
    session.thread = threading.Thread(target=_watch, args=(session,), name="vidtune-watchdog", daemon=True)
    session.thread.start()
    _SESSION = session
    if not world.is_main:
        _quiet_libraries()
    yield world
    session.stop.set()  # the group ends normally: rank 0's store may go before the others finish
    session.thread.join()
    barrier()
    dist.destroy_process_group()
    _SESSION = None


def _quiet_libraries() -> None:
    """No loading bars from diffusers / transformers on ranks other than 0 (one set per run, not K)."""
    with contextlib.suppress(ImportError):
        import diffusers.utils.logging
        import transformers.utils.logging

        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()


def _watch(session: _Session) -> None:
    """Exit with status 2 as soon as another rank has put an error into the store (see `fail`)."""
    while not session.stop.wait(WATCH_INTERVAL):
        try:
            seen = session.store.check([ERROR_KEY])
        except Exception:  # the store is gone: the launcher (or rank 0, which may host it) stopped
            seen = not session.stop.is_set()
            if seen:
                print(f"vidtune: error: rank {session.world.rank}: lost the run's store", file=sys.stderr)
        if seen and not session.failing.is_set() and not session.stop.is_set():
            with contextlib.suppress(Exception):
                session.store.add(ACK_KEY, 1)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(2)


def fail(message: str) -> str:
    """Tell the other ranks that this one failed with `message` (they exit with status 2) and return
    the line to print: the message, prefixed with the rank when the run has several processes."""
    session = _SESSION
    if session is None:
        return message
    world = session.world
    line = f"rank {world.rank} of {world.size}: {message}"
    session.failing.set()
    session.stop.set()
    with contextlib.suppress(Exception):
        session.store.set(ERROR_KEY, line)
        deadline = time.monotonic() + ACK_WAIT
        while session.store.add(ACK_KEY, 0) < world.size - 1 and time.monotonic() < deadline:
            time.sleep(WATCH_INTERVAL / 2)
    return line


# ---------------------------------------------------------------------------------------------
# Splits (pure)


def parts(n: int, size: int, align: int = 1) -> list[range]:
    """`n` items in `size` contiguous ranges, balanced in blocks of `align` items (the first ranges get
    one block more; the last block may be short). With `align` = the UNet's frame batch every rank
    evaluates exactly the batches one process evaluates, so the split changes no bit of the result
    (a batch of other frames may round differently in the last bit)."""
    blocks = -(-n // align)
    base, extra = divmod(blocks, size)
    bounds = [min(n, align * (r * base + min(r, extra))) for r in range(size + 1)]
    return [range(bounds[r], bounds[r + 1]) for r in range(size)]


def part(n: int, world: World | None = None, align: int = 1) -> range:
    """This rank's contiguous range of `n` items (all of them in one process); see `parts`."""
    world = world or current()
    return parts(n, world.size, align)[world.rank]


# ---------------------------------------------------------------------------------------------
# Collectives (each the identity in one process)


@dataclass
class CommStats:
    """Wall seconds spent in this module's collectives and their count (bench/distributed.py reads it)."""

    seconds: float = 0.0
    calls: int = 0

    def reset(self) -> None:
        self.seconds, self.calls = 0.0, 0


STATS = CommStats()


@contextlib.contextmanager
def _timed() -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        STATS.seconds += time.perf_counter() - start
        STATS.calls += 1


def _comm_device(like: torch.device) -> torch.device:
    """Where a collective's tensors must be: the rank's GPU for NCCL, the CPU for gloo."""
    if dist.get_backend() == "nccl":
        return like if like.type == "cuda" else torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def gather_rows(local: torch.Tensor, n: int, align: int = 1) -> torch.Tensor:
    """The (n, ...) tensor whose rows `part(n, rank, align)` each rank holds as `local`, on every rank."""
    world = current()
    if not world.enabled:
        return local
    ranges = parts(n, world.size, align)
    if local.shape[0] != len(ranges[world.rank]):
        raise ValueError(f"rank {world.rank} holds {local.shape[0]} rows, its part of {n} is {ranges[world.rank]}")
    longest = max(len(r) for r in ranges)
    device = _comm_device(local.device)
    padded = local.new_zeros((longest, *local.shape[1:]), device=device)
    padded[: local.shape[0]] = local.to(device)
    chunks = [torch.empty_like(padded) for _ in ranges]
    with _timed():
        dist.all_gather(chunks, padded)
    return torch.cat([c[: len(r)] for c, r in zip(chunks, ranges)]).to(local.device)


def gather_array(local: np.ndarray, n: int, align: int = 1) -> np.ndarray:
    """`gather_rows` for a numpy array (decoded frames, masks)."""
    if not current().enabled:
        return local
    return gather_rows(torch.from_numpy(np.ascontiguousarray(local)), n, align).numpy()


def all_reduce_sum(tensors: Sequence[torch.Tensor]) -> None:
    """Sum each tensor over the ranks, in place (one collective per tensor)."""
    if not current().enabled:
        return
    for t in tensors:
        device = _comm_device(t.device)
        buf = t if t.device == device else t.to(device)
        with _timed():
            dist.all_reduce(buf)
        if buf is not t:
            t.copy_(buf)


def broadcast_object(obj: Any) -> Any:
    """Rank 0's `obj` on every rank (picklable, small: a list of stages, a step number)."""
    if not current().enabled:
        return obj
    box = [obj]
    with _timed():
        dist.broadcast_object_list(box, src=0, device=_comm_device(torch.device("cpu")))
    return box[0]


def barrier() -> None:
    """Wait for every rank (e.g. until rank 0 has written what the others read next)."""
    if current().enabled:
        with _timed():
            dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (e.g. it fills a cache folder), then the others (which read it)."""
    world = current()
    if world.enabled and not world.is_main:
        barrier()
    yield
    if world.enabled and world.is_main:
        barrier()


def main_only(log: Callable[[str], None]) -> Callable[[str], None]:
    """`log` on rank 0, a no-op on the other ranks (one message per run, not one per process)."""
    if current().is_main:
        return log
    return lambda message: None


def gathered_eps_fn(eps_fn: Callable, rows: range, n: int, align: int = 1) -> Callable:
    """An eps function of the whole video (n frames) from one computing only `rows`: every rank
    evaluates its rows of the scheduler-scaled latents and the rows are gathered, so each rank
    holds the whole video's eps and takes the same scheduler step as one process would. `rows` must be
    `part(n, align=align)`."""
    if not current().enabled:
        return eps_fn

    def whole(model_input: torch.Tensor, t: torch.Tensor, step: int) -> torch.Tensor:
        return gather_rows(eps_fn(model_input[rows.start : rows.stop], t, step), n, align)

    return whole


# ---------------------------------------------------------------------------------------------
# Stage 4: clips over the ranks


def weighted_parts(weights: Sequence[int], size: int) -> list[range]:
    """Contiguous ranges of items with `weights` (frames per batch of clips) for `size` ranks, balanced by
    weight: range r ends at the first item where the running total reaches r + 1 K-ths of the total."""
    total = sum(weights)
    bounds, running, r = [0], 0, 1
    for i, w in enumerate(weights):
        running += w
        while r < size and running * size >= r * total:
            bounds.append(i + 1)
            r += 1
    bounds += [len(weights)] * (size + 1 - len(bounds))
    return [range(bounds[r], bounds[r + 1]) for r in range(size)]


def rank_batches(batches: list[list[int]], windows: Sequence[tuple[int, int]]) -> list[list[int]]:
    """This rank's share of stage 4's batches of clips (all of them in one process), balanced by frames.
    Whole batches move, so each clip's eps is computed in the same batch as in one process and the
    result is bit-identical to one process's (splitting clips and batching them again made it differ
    by 4e-5 on the demo model). The balance is then as fine as the batches: with few batches per rank
    lower `codenoise.max_batch_frames` (bench/results/distributed.md)."""
    world = current()
    if not world.enabled:
        return batches
    frames = [sum(windows[k][1] - windows[k][0] for k in b) for b in batches]
    return [batches[i] for i in weighted_parts(frames, world.size)[world.rank]]


def all_reduce_merge(acc: Any, like: torch.Tensor) -> None:
    """Sum a `windows.MergeAccumulator`'s sums and weights over the ranks (one all-reduce of both, the
    step's only collective), so that every rank's `result()` merges every clip's eps. A rank without
    clips this step adds a zero-weight frame first (which allocates its zero sums through `add`)."""
    if not current().enabled:
        return
    if acc._sum is None:
        acc.add((0, 1), like[:1], like.new_zeros(1))
    flat = torch.cat([acc._sum.flatten(), acc._weight.flatten()])
    all_reduce_sum([flat])
    acc._sum.copy_(flat[: acc._sum.numel()].view_as(acc._sum))
    acc._weight.copy_(flat[acc._sum.numel() :].view_as(acc._weight))
