"""The audit's configuration: the measurement plus what only an offline audit needs.

Importable without torch, so ``audit-checkpoints`` checks its arguments in milliseconds. The audit
reads the callback's config file: which keys belong to which front end is
:data:`~lda_monitor.config.front_ends.FRONT_ENDS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.config_fields import real_list
from ..core.measurement import Measurement, is_real
from ..declared import declared_field
from ..engine.dtypes import DTYPE_HELP
from .models import ModelOptions

AUTOCAST_OFF = "off"
AUTOCAST_CHOICES = (None, AUTOCAST_OFF, "bfloat16", "float16")  # engine.autocast.AUTOCAST_DTYPES, without torch


@dataclass
class AuditConfig(Measurement):
    """:class:`~lda_monitor.core.measurement.Measurement` plus the audit's own keys."""

    out: str | None = field(default=None, metadata={"help": (
        "output directory (required; a rerun with the same directory resumes)"), "metavar": "DIR"})
    alphas: tuple[float, ...] | None = field(default=None, metadata={"help": (
        "a sweep: these alphas at every checkpoint instead of the alpha schedule "
        "(flag: comma-separated, e.g. 0,1,2,4)"), "metavar": "A,B,...", "parse": real_list})
    reference: str = field(default="auto", metadata={"help": (
        "the before model: 'auto' or 'base' (an adapter's base, or --base-model for full checkpoints), "
        "'first' (the first checkpoint found), or a model directory"), "metavar": "REF"})
    base_model: str | None = declared_field(ModelOptions, "base_model", help=(
        "the model training started from (adapters whose config names a hub id; full checkpoints "
        "with reference base)"))
    device: str | None = declared_field(ModelOptions, "device")
    dtype: str | None = field(default=None, metadata={"help": (
        "compute dtype; left out: the one the monitor computed in at these checkpoints (recorded in their "
        "trainer_state.json, so the audit reproduces its rollouts), else auto; "
        + DTYPE_HELP.removeprefix("compute dtype: "))})
    autocast: str | None = field(default=None, metadata={"help": (
        "mixed precision: left out, the autocast the monitor computed under at these checkpoints (a Trainer "
        "with bf16=True or fp16=True; recorded in their trainer_state.json), else none; 'off', or "
        "bfloat16 / float16 to wrap the models' forward in that autocast as accelerate does"),
        "metavar": "DTYPE"})
    wandb_project: str | None = field(default=None, metadata={"help": (
        "log the audit as one W&B run (offline unless logged in / WANDB_MODE)")})
    allow_pickle: bool = declared_field(ModelOptions, "allow_pickle")
    trust_remote_code: bool = declared_field(ModelOptions, "trust_remote_code",
                                             help="run custom model code from checkpoint dirs")

    def problems(self) -> list[str]:
        problems = super().problems()
        if not self.out:
            problems.append("out: required; give an output directory (--out DIR)")
        if self.autocast not in AUTOCAST_CHOICES:
            problems.append(f"autocast: one of {', '.join(c for c in AUTOCAST_CHOICES if c)} or left out, "
                            f"got {self.autocast!r}")
        if self.alphas is not None:
            values = tuple(self.alphas) if isinstance(self.alphas, list | tuple) else None
            if not values or not all(is_real(a) for a in values):
                problems.append(f"alphas: must be a non-empty list of numbers, got {self.alphas!r}")
            else:
                object.__setattr__(self, "alphas", tuple(float(a) for a in values))
        return problems

    @property
    def reference_kind(self) -> str:
        """'base', 'first' or 'path'."""
        if self.reference in ("auto", "base"):
            return "base"
        return "first" if self.reference == "first" else "path"
