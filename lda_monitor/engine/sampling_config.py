"""The decode loop's settings (:class:`SamplingConfig`), importable without torch or transformers
so that configs and command-line arguments are checked before any heavy import."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from ..declared import declared_field, declared_help
from ..errors import UserInputError

# How a PEFT pair gets both logit vectors: "auto" (the measured faster one), one forward over the
# doubled batch with per-row adapters, or two forwards (adapter on, adapter disabled).
PEFT_STRATEGIES = ("auto", "doubled", "two-pass")
# How a server decodes requests that send a seed when the model is bfloat16/float16
# (lda_monitor.server.batcher): a float32 copy, merged; alone in the model's dtype; merged in it.
SEEDED_DECODING = ("float32", "alone", "merged")


def sampler_field(name: str, **metadata):
    """A dataclass field declared as :class:`SamplingConfig`'s field ``name``, for a config that
    composes the sampler (:func:`~lda_monitor.declared.declared_field`)."""
    return declared_field(SamplingConfig, name, **metadata)


def sampler_help(name: str) -> str:
    return declared_help(SamplingConfig, name)


def sampler_problems(values: dict) -> list[tuple[str, str]]:
    """(field, message) for every invalid sampler value in ``values`` (absent fields are not
    checked): the one place that says what a valid sampler setting is."""
    problems = []

    def check(name: str, ok, what: str) -> None:
        if name in values and not ok(values[name]):
            problems.append((name, f"{name} {what}, got {values[name]!r}"))

    check("alpha", lambda a: isinstance(a, int | float) and a == a, "must be a real number")
    check("max_new_tokens", lambda n: n >= 1, "must be >= 1")
    if not values.get("greedy"):
        check("temperature", lambda t: t > 0, "must be > 0 (use greedy for argmax)")
    check("top_k", lambda k: k >= 0, "must be >= 0 (0 = off)")
    check("top_p", lambda p: 0 < p <= 1, "must be in (0, 1]")
    check("min_p", lambda p: p is None or 0 <= p <= 1, "must be in [0, 1]")
    check("batch_size", lambda n: n >= 1, "must be >= 1")
    return problems


@dataclass(frozen=True)
class SamplingConfig:
    """How to sample, declared once: every front end (the measurement and its flags, YAML keys and
    docs rows, ``lda-monitor sample``, both HTTP APIs) takes these fields' names, help and rules
    from here, and :func:`sampler_problems` is the one check of their values. Sampling knobs
    follow Hugging Face ``generate`` semantics and order (temperature, top-k, top-p, min-p).
    ``top_k=0``/``top_p=1``/``min_p=None`` switch a knob off."""

    alpha: float = field(default=1.0, metadata={"help": "amplification: 0 = after model, -1 = before model"})
    max_new_tokens: int = field(default=128, metadata={"help": "tokens per rollout at most"})
    greedy: bool = field(default=False, metadata={"help": "argmax decoding (the sampling knobs are then off)"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature"})
    top_k: int = field(default=0, metadata={"help": "top-k sampling (0 = off)"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling (1 = off)"})
    min_p: float | None = field(default=None, metadata={"help": "min-p sampling (None = off)"})
    stop_strings: tuple[str, ...] = field(default=(), metadata={"help": "extra strings that end a rollout"})
    seed: int = field(default=0, metadata={"help": "seed of the rollouts' random streams (never the global RNG)"})
    system_prompt: str | None = field(default=None, metadata={"help": "system prompt added to every chat prompt"})
    chat_template: bool = field(default=True, metadata={
        "help": "render prompts with the tokenizer's chat template (off: raw text)"})
    batch_size: int = field(default=32, metadata={"help": (
        "rollouts decoded together (changes no result in float32; in bfloat16 a batch's shape can change "
        "sampled tokens, so compare runs at the same batch_size)")})
    ignore_eos: bool = field(default=False, metadata={
        "help": "decode exactly max_new_tokens per row (benchmarks)"})

    def __post_init__(self):
        problems = sampler_problems(vars(self))
        if problems:
            raise UserInputError("; ".join(message for _, message in problems))

    @classmethod
    def from_fields(cls, values: dict, **overrides) -> SamplingConfig:
        """The config from a front end's values (``values`` may hold other keys; lists become tuples)."""
        names = {f.name for f in fields(cls)}
        chosen = {k: v for k, v in {**values, **overrides}.items() if k in names}
        if isinstance(chosen.get("stop_strings"), list):
            chosen["stop_strings"] = tuple(chosen["stop_strings"])
        return cls(**chosen)

    def warpers(self):
        """The logit transforms applied before sampling (empty for greedy): Hugging Face's own
        warpers, so the knobs mean exactly what they mean in ``generate``."""
        from transformers.generation.logits_process import (
            LogitsProcessorList,
            MinPLogitsWarper,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        out = LogitsProcessorList()
        if self.greedy:
            return out
        if self.temperature != 1.0:
            out.append(TemperatureLogitsWarper(self.temperature))
        if self.top_k:
            out.append(TopKLogitsWarper(top_k=self.top_k))
        if self.top_p < 1.0:
            out.append(TopPLogitsWarper(top_p=self.top_p))
        if self.min_p:
            out.append(MinPLogitsWarper(min_p=self.min_p))
        return out
