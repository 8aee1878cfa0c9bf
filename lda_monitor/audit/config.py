"""The audit's configuration: the measurement plus what only an offline audit needs.

Importable without torch, so ``audit-checkpoints`` checks its arguments in milliseconds. The audit
reads the callback's config file, so this module also names the front ends that share one file
(:data:`FRONT_ENDS`): the callback's config is a leaf below it, and the callback imports the list
from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config_file import FrontEnd, markdown_table, read_config_file
from ..core.config_fields import real_list
from ..core.measurement import Measurement, is_real
from ..engine.dtypes import DTYPE_HELP
from ..monitor.config import MonitorConfig


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
    base_model: str | None = field(default=None, metadata={"help": (
        "the model training started from (adapters whose config names a hub id; full checkpoints "
        "with reference base)"), "metavar": "DIR"})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1, ... (default: cuda if available)"})
    dtype: str | None = field(default=None, metadata={"help": (
        "compute dtype; left out: the one the monitor computed in at these checkpoints (recorded in their "
        "trainer_state.json, so the audit reproduces its rollouts), else auto; "
        + DTYPE_HELP.removeprefix("compute dtype: "))})
    wandb_project: str | None = field(default=None, metadata={"help": (
        "log the audit as one W&B run (offline unless logged in / WANDB_MODE)")})
    allow_pickle: bool = field(default=False, metadata={"help": "allow pickle (.bin) weights"})
    trust_remote_code: bool = field(default=False, metadata={"help": "run custom model code from checkpoint dirs"})

    def problems(self) -> list[str]:
        problems = super().problems()
        if not self.out:
            problems.append("out: required; give an output directory (--out DIR)")
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

    @classmethod
    def file_values(cls, path) -> dict:
        """The keys of a YAML config (shared with the callback) that the audit uses."""
        return read_config_file(path, cls, FRONT_ENDS)

    @classmethod
    def from_yaml(cls, path, **overrides) -> AuditConfig:
        """A YAML config shared with the callback; ``overrides`` (command-line flags) win."""
        return cls(**{**cls.file_values(path), **overrides})


# The front ends one config file drives, in the docs table's order.
FRONT_ENDS = (FrontEnd("the training callback", "callback", MonitorConfig),
              FrontEnd("audit-checkpoints", "audit", AuditConfig))


def config_table() -> str:
    """The docs' config table (:func:`lda_monitor.config_file.markdown_table` of both front ends)."""
    return markdown_table(FRONT_ENDS)
