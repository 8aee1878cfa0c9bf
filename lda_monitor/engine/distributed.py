"""The process group as the monitor and the auditor see it: which share of the work is this
rank's, and the few collectives that merge the shares.

Every helper is a no-op in a single process, so the callers have one code path. Rollouts have
their own random streams (see :mod:`lda_monitor.engine.sampling`), so a strided split of the work list
over ranks, gathered and put back in work order, is exactly the single-process result.

Hangs are the failure mode to design against: under FSDP or ZeRO-3 every forward is a
collective, so every rank must run the same number of forwards, and every rank must reach every
gather even when its own part failed. :meth:`Ranks.any` is what the decode loop uses to keep
ranks in step, and :meth:`Ranks.gather_or_raise` turns one rank's exception into the same
exception on every rank.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import torch

from ..errors import UserInputError

T = TypeVar("T")


class DistributedFailure(RuntimeError):
    """Some rank failed; raised on every rank so they leave the collective sequence together."""


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1

    @classmethod
    def current(cls) -> Ranks:
        """The default process group if one is initialised (torchrun, accelerate launch, a
        distributed Trainer), else a single process."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's share: every ``world_size``-th item from position ``rank``."""
        return list(items[self.rank :: self.world_size])

    def all_gather(self, obj: T) -> list[T]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.active:
            return [obj]
        import torch.distributed as dist

        out: list = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank (a decision every rank must take the same way)."""
        if not self.active:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def _reduce_max(self, value: int) -> int:
        import torch.distributed as dist

        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
        t = torch.tensor([value], dtype=torch.long, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on some rank."""
        return bool(self._reduce_max(int(flag))) if self.active else flag

    def max(self, value: int) -> int:
        return self._reduce_max(value) if self.active else value

    def gather_or_raise(self, compute: Callable[[], T]) -> list[T]:
        """Run ``compute`` here and gather every rank's result. If any rank raised, every rank
        raises: a :class:`~lda_monitor.errors.UserInputError` (the same user mistake seen by
        every rank) as itself, anything else as :class:`DistributedFailure` naming each failure."""
        try:
            mine, error = compute(), None
        except Exception as exc:  # re-raised below, on every rank
            if not self.active:
                raise
            # Only strings cross the wire: an exception object may not pickle.
            mine, error = None, (isinstance(exc, UserInputError), f"{exc}",
                                 f"rank {self.rank}: {type(exc).__name__}: {exc}")
        gathered = self.all_gather((mine, error))
        errors = [e for _, e in gathered if e is not None]
        if errors:
            if all(user for user, _, _ in errors):
                raise UserInputError(errors[0][1])
            raise DistributedFailure("; ".join(described for _, _, described in errors))
        return [m for m, _ in gathered]


SINGLE = Ranks()


@contextmanager
def process_group_from_environment() -> Iterator[Ranks]:
    """For command-line jobs under ``torchrun`` / ``accelerate launch`` (``WORLD_SIZE`` > 1 in
    the environment): join the process group for the duration (NCCL with one GPU per local
    rank where CUDA is available, gloo otherwise). A Trainer sets up its own group."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or dist.is_initialized():
        yield Ranks.current()
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    try:
        yield Ranks.current()
    finally:
        dist.barrier()  # no rank tears the group down while another still has work in flight
        dist.destroy_process_group()


def rank_device(device: str | None) -> str | None:
    """Under a process group, a bare ``cuda`` (or no device) means this rank's own GPU."""
    if Ranks.current().active and torch.cuda.is_available() and device in (None, "cuda"):
        return f"cuda:{torch.cuda.current_device()}"
    return device
