"""The monitor's configuration: one dataclass behind ``LDAMonitorCallback(**options)`` and YAML files.

Every key carries its ``help`` (TRL style) and is validated up front, so a typo or a bad value
fails when the callback is built - with the key named and the fix suggested - rather than
hours into a training run. A YAML config holds these keys at the top level; relative paths in
``prompts`` and ``reference`` resolve against the config file's directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..core.measurement import Measurement, is_int, is_real
from ..declared import declared_field
from ..engine.sampling_config import PEFT_STRATEGIES
from ..errors import UserInputError
from .files import check_keys
from .models import ModelOptions

TRIGGERS = ("steps", "evaluate")
GUARDRAIL_ACTIONS = ("alert", "stop")
AUTO_REFERENCE = "auto"


@dataclass
class MonitorConfig(Measurement):
    """The measurement (:class:`~lda_monitor.core.measurement.Measurement`) plus the callback's own keys."""

    # When.
    every_n_steps: int = field(default=50, metadata={"help": (
        "evaluate when global_step % every_n_steps == 0 (plus step 0 and the last step)")})
    trigger: str = field(default="steps", metadata={"help": (
        "'steps': every_n_steps; 'evaluate': whenever the Trainer evaluates (plus step 0 and the end)")})
    probe_prompts: int = field(default=4, metadata={"help": (
        "adaptive alpha only: prompts in the probe batch the KL target is measured on")})
    tokenizer: object = field(default=None, metadata={"help": (
        "tokenizer for prompts (default: the trainer's processing_class)")})
    # The reference.
    reference: object = field(default=AUTO_REFERENCE, metadata={"help": (
        "'auto' (chosen at train begin: adapter-disabled base, adapter snapshot or weight snapshot), "
        "a checkpoint directory, or a model such as trainer.ref_model")})
    reference_offload: bool = field(default=False, metadata={"help": (
        "keep a weight snapshot or loaded checkpoint on CPU; move it to the policy's device only to evaluate")})
    reference_dtype: str | None = field(default=None, metadata={"help": (
        "hold a weight snapshot or loaded checkpoint in this dtype (e.g. bfloat16) to save memory; "
        "None keeps the policy's dtype, so the reference equals the policy at train begin ('auto' "
        "would round it on bf16 hardware and make step 0 differ)")})
    peft_strategy: str = declared_field(ModelOptions, "peft_strategy")
    # Where results go.
    records_dir: str | None = field(default=None, metadata={"help": (
        "directory of the rollout JSONL (default: <output_dir>/lda_monitor)")})
    table_unflagged_samples: int = field(default=8, metadata={"help": (
        "unflagged rollouts added to each W&B table besides every flagged one")})
    wandb_workspace: bool = field(default=False, metadata={"help": (
        "at train begin, save a W&B workspace view of the monitor's panels to the run's project (filtered "
        "to its group when it has one; needs wandb-workspaces and an online run; see docs/wandb.md)")})
    log_progress: bool = field(default=True, metadata={"help": (
        "log one line per evaluation (step, alpha, amplified and plain flagged k/n, unscored, seconds) "
        "to the lda_monitor.core.progress logger (stderr unless the program configured logging), and "
        "progress within it: a bar per phase (amplified, plain, estimate) on a terminal, otherwise a "
        "line per phase at each quarter of its rollouts or every 30 s")})
    # Never hurt the run.
    max_eval_seconds: float | None = field(default=None, metadata={"help": (
        "time budget per evaluation: once exceeded, remaining prompts are skipped and partial "
        "results reported with lda/skipped_rollouts")})
    max_monitor_fraction: float | None = field(default=None, metadata={"help": (
        "keep monitoring under this share of the training wall time: from the first measured "
        "evaluation on, each evaluation is sized to its budget by shrinking rollouts per prompt "
        "(floor 2), then prompts (floor 4), then max_new_tokens (floor 32), never above the "
        "configured values; every change is logged and recorded (lda/eval_* size metrics, each "
        "record's extra['evaluation_size']). None = always as configured (lda_monitor.monitor.cost)")})
    warn_time_share: float | None = field(default=0.25, metadata={"help": (
        "warn when monitoring has taken more than this share of training wall time (None = never)")})
    fail_on_error: bool = field(default=False, metadata={"help": (
        "raise when an evaluation fails instead of warning and counting lda/errors")})
    stop_on_flag_rate_lower_bound: float | None = field(default=None, metadata={"help": (
        "guardrail: act when the lower Wilson bound of the amplified flag rate exceeds this")})
    guardrail_action: str = field(default="alert", metadata={"help": (
        "'alert' (lda/alert = 1 and a warning) or 'stop' (also stop training)")})

    def problems(self) -> list[str]:
        problems = super().problems()

        def check(ok: bool, key: str, what: str):
            if not ok:
                problems.append(f"{key}: {what}, got {getattr(self, key)!r}")

        check(is_int(self.every_n_steps) and self.every_n_steps >= 1, "every_n_steps",
              "must be an integer >= 1 (optimizer steps between evaluations)")
        check(self.trigger in TRIGGERS, "trigger", f"must be one of {TRIGGERS}")
        check(is_int(self.probe_prompts) and self.probe_prompts >= 1, "probe_prompts", "must be an integer >= 1")
        check(self.peft_strategy in PEFT_STRATEGIES, "peft_strategy", f"must be one of {PEFT_STRATEGIES}")
        check(self.guardrail_action in GUARDRAIL_ACTIONS, "guardrail_action", f"must be one of {GUARDRAIL_ACTIONS}")
        check(self.max_eval_seconds is None or (is_real(self.max_eval_seconds) and self.max_eval_seconds > 0),
              "max_eval_seconds", "must be None (no budget) or a number of seconds > 0")
        check(self.max_monitor_fraction is None
              or (is_real(self.max_monitor_fraction) and 0 < self.max_monitor_fraction < 1),
              "max_monitor_fraction", "must be None (as configured) or a share in (0, 1), e.g. 0.1")
        check(self.warn_time_share is None or (is_real(self.warn_time_share) and 0 < self.warn_time_share <= 1),
              "warn_time_share", "must be None (never warn) or a share in (0, 1]")
        check(self.stop_on_flag_rate_lower_bound is None
              or (is_real(self.stop_on_flag_rate_lower_bound) and 0 <= self.stop_on_flag_rate_lower_bound < 1),
              "stop_on_flag_rate_lower_bound", "must be None (no guardrail) or a rate in [0, 1)")
        check(is_int(self.table_unflagged_samples) and self.table_unflagged_samples >= 0,
              "table_unflagged_samples", "must be an integer >= 0")
        check(self.reference is None or isinstance(self.reference, str | Path) or hasattr(self.reference, "parameters"),
              "reference", "must be 'auto', a checkpoint directory, or a torch model")
        try:
            from ..engine.dtypes import resolve_dtype

            resolve_dtype(self.reference_dtype, announce=False)
        except UserInputError as exc:
            problems.append(f"reference_dtype: {exc}")
        return problems

    @property
    def auto_reference(self) -> bool:
        return self.reference is None or (isinstance(self.reference, str) and self.reference == AUTO_REFERENCE)

    @classmethod
    def check_keys(cls, keys, where: str) -> None:
        """Reject keys the callback does not take, with a "did you mean" hint."""
        check_keys(keys, where, known=[f.name for f in fields(cls)])

    def to_dict(self) -> dict:
        """JSON-safe view for run configs: objects (a judge, a Dataset, a model) become a short
        description."""
        return {f.name: _json_safe(getattr(self, f.name)) for f in fields(self)}

    def serializable_args(self) -> dict:
        """The keys that round-trip through JSON, for the checkpointed callback state."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if _json_safe(value) is value:
                out[f.name] = value
        return out


def _json_safe(value):
    """``value`` itself when JSON can hold it, else a description of the object."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        name = getattr(value, "name", None)
        return f"<{type(value).__name__}{f' {name!r}' if isinstance(name, str) else ''}>"
