"""Which two models to load and how: the model-loading options of ``sample`` and ``serve`` (flags
generated from :class:`ModelOptions`), and the ones the audit shares (its fields are declared
from these with :func:`~lda_monitor.declared.declared_field`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..engine.dtypes import DTYPE_HELP
from ..engine.embedded import EMBEDDED_NAME
from ..engine.sampling_config import PEFT_STRATEGIES


@dataclass(frozen=True)
class ModelOptions:
    """The arguments of :func:`~lda_monitor.engine.models.load_pair`, as a user gives them."""

    after: str | None = field(default=None, metadata={"help": (
        f"policy model: a local model dir, a PEFT adapter dir, or {EMBEDDED_NAME!r}"), "metavar": "MODEL",
        "required": True})
    before: str | None = field(default=None, metadata={"help": (
        "reference model dir (default for an adapter: its base)"), "metavar": "DIR"})
    adapter: str | None = field(default=None, metadata={"help": (
        "PEFT adapter dir applied on top of --after (the reference is --after alone)"), "metavar": "DIR"})
    base_model: str | None = field(default=None, metadata={"help": (
        "base model dir for an adapter whose config names a hub id"), "metavar": "DIR"})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda, cuda:1, ... (default: cuda if available)",
                                                        "metavar": "DEVICE"})
    dtype: str = field(default="auto", metadata={"help": DTYPE_HELP, "metavar": "DTYPE"})
    peft_strategy: str = field(default="auto", metadata={"help": (
        "PEFT policies: 'doubled' (one forward over [base; adapter] rows) or 'two-pass'"),
        "choices": PEFT_STRATEGIES})
    allow_pickle: bool = field(default=False, metadata={"help": "allow pickle (.bin) weights"})
    trust_remote_code: bool = field(default=False, metadata={"help": "run custom model code from the model dirs"})

    def load_pair_arguments(self) -> dict:
        """Keywords for :func:`~lda_monitor.engine.models.load_pair` (``after`` given apart)."""
        values = asdict(self)
        values.pop("after")
        values["base"] = values.pop("base_model")
        return values
