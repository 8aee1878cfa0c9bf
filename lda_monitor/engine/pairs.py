"""Where the before/after next-token logits come from.

The sampler only needs, at each decoding step, the last-position logits of the policy
(``after``) and of the reference (``before``) for every live row. This module hides how they
are produced:

* :class:`TwoModelPair` - two separate causal LMs, each with its own KV cache, possibly on
  different devices and in different dtypes.
* :class:`PeftPair` - one PEFT model: ``after`` is the active adapter, ``before`` the model with
  adapters disabled or a named frozen adapter. Nothing is merged and no weights are copied.
  Strategy ``"doubled"`` runs one forward over ``[batch; batch]`` with per-row
  ``adapter_names``; ``"two-pass"`` runs two forwards with two caches.

A pair opens a :class:`DecodeSession` per batch; the session owns the caches and supports
dropping finished rows so they stop costing compute.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from contextlib import contextmanager, nullcontext

import torch

from .sampling_config import PEFT_STRATEGIES
from .tensors import model_device
from .vocab import Compatibility, require_compatible

BASE_ADAPTER = "__base__"  # PEFT's name for "no adapter" in mixed-batch adapter_names


def _output_width(model) -> int:
    """Rows of the output layer: the full width even when the weight is sharded (an FSDP2
    DTensor reports its global shape; a ZeRO-3 partitioned parameter keeps it in ``ds_shape``)."""
    weight = model.get_output_embeddings().weight
    return int(getattr(weight, "ds_shape", weight.shape)[0])


def _forward_parameters(model) -> set[str]:
    """Keyword names the underlying transformers forward accepts (PEFT wrappers take **kwargs)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return set(inspect.signature(inner.forward).parameters)


@contextmanager
def _two_dim_output_layer(model):
    """Feed the output layer ``[rows, hidden]`` instead of ``[rows, 1, hidden]``.

    With ``logits_to_keep=1`` the head sees a 3-D slice; on CPU with frozen bf16 weights torch
    then copies the whole output-layer weight on every batched prefill (measured: 5.7 s vs 2.4 s
    for a 32-row SmolLM2 prefill). A 2-D input takes the plain GEMM path; the output is given
    its middle axis back so the model's own code sees the shapes it expects.
    """
    head = model.get_output_embeddings()
    handles = [
        head.register_forward_pre_hook(lambda module, args: (args[0].reshape(-1, args[0].shape[-1]), *args[1:])),
        head.register_forward_hook(lambda module, args, out: out.unsqueeze(1)),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


class _CachedForward:
    """One model's incremental forward: returns the last-position logits, keeps the KV cache."""

    def __init__(self, model, width: int, out_device: torch.device, extra: dict | None = None):
        self.model = model
        self.width = width
        self.device = model_device(model)
        self.out_device = out_device
        self.extra = dict(extra or {})
        accepted = _forward_parameters(model)
        if "logits_to_keep" in accepted:
            # Only the last position's logits are needed: never materialise [B, T, V].
            self.extra["logits_to_keep"] = 1
        # transformers >= 5.2x renamed past_key_values to cache; older models keep the old name.
        self.cache_arg = "cache" if "cache" in accepted else "past_key_values"
        self.cache = None

    def __call__(self, input_ids, attention_mask, position_ids, context=None) -> torch.Tensor:
        head = _two_dim_output_layer(self.model) if "logits_to_keep" in self.extra else nullcontext()
        with context if context is not None else nullcontext(), head:
            out = self.model(
                input_ids=input_ids.to(self.device),
                attention_mask=attention_mask.to(self.device),
                position_ids=position_ids.to(self.device),
                use_cache=True,
                **{self.cache_arg: self.cache},
                **self.extra,
            )
        self.cache = out.cache if self.cache_arg == "cache" else out.past_key_values
        logits = out.logits[:, -1, : self.width]
        return logits.to(device=self.out_device, dtype=torch.float32)

    def keep_rows(self, rows: torch.Tensor) -> None:
        if self.cache is not None:
            self.cache.batch_select_indices(rows.to(self.device))


class DecodeSession(ABC):
    """Per-batch decoding state. ``forward`` returns ``(after_logits, before_logits | None)``,
    float32, ``[rows, shared_vocab]``, on the pair's sampling device."""

    @abstractmethod
    def forward(self, input_ids, attention_mask, position_ids):
        """Feed new tokens (the whole prompt at prefill, one token per row after)."""

    @abstractmethod
    def keep_rows(self, rows: torch.Tensor) -> None:
        """Keep the rows listed in ``rows`` (indices into the current batch), in that order, and drop
        the others from the caches; a repeated index copies its row (one prefill, many samples)."""


class LogitPair(ABC):
    """A source of before/after logits over one shared token space."""

    tokenizer = None
    compatibility: Compatibility

    @property
    @abstractmethod
    def device(self) -> torch.device:
        """Where the sampler builds input tensors and combines logits."""

    @property
    def shared_vocab(self) -> int:
        return self.compatibility.shared_vocab

    @abstractmethod
    def open(self, need_before: bool = True) -> DecodeSession:
        """Start a batch. With ``need_before=False`` (plain sampling, alpha 0) no before forward runs."""

    @abstractmethod
    def describe(self) -> str:
        """One line for logs: which models, which strategy."""

    @property
    @abstractmethod
    def models(self) -> list:
        """The distinct ``nn.Module`` objects involved (for eval-mode and cache hygiene)."""


class _TwoModelSession(DecodeSession):
    def __init__(self, after: _CachedForward, before: _CachedForward | None):
        self.after, self.before = after, before

    def forward(self, input_ids, attention_mask, position_ids):
        a = self.after(input_ids, attention_mask, position_ids)
        b = self.before(input_ids, attention_mask, position_ids) if self.before else None
        return a, b

    def keep_rows(self, rows):
        self.after.keep_rows(rows)
        if self.before:
            self.before.keep_rows(rows)


class TwoModelPair(LogitPair):
    """Two separate causal LMs sharing a token space (devices and dtypes may differ)."""

    def __init__(self, after_model, before_model, tokenizer, before_tokenizer=None):
        self.after_model, self.before_model = after_model, before_model
        self.tokenizer = tokenizer
        self.compatibility = require_compatible(
            tokenizer,
            before_tokenizer,
            after_width=_output_width(after_model),
            before_width=_output_width(before_model),
        )

    @property
    def device(self):
        return model_device(self.after_model)

    @property
    def models(self):
        return [self.after_model] if self.before_model is self.after_model else [
            self.after_model,
            self.before_model,
        ]

    def open(self, need_before=True):
        width, dev = self.shared_vocab, self.device
        after = _CachedForward(self.after_model, width, dev)
        before = _CachedForward(self.before_model, width, dev) if need_before else None
        return _TwoModelSession(after, before)

    def describe(self):
        a, b = self.after_model, self.before_model
        return (
            f"two models: after={type(a).__name__}({model_device(a)}, {a.dtype}), "
            f"before={type(b).__name__}({model_device(b)}, {b.dtype})"
        )


class _DoubledSession(DecodeSession):
    """One forward over ``[before rows; after rows]`` with per-row adapter names."""

    def __init__(self, pair: PeftPair):
        self.pair = pair
        self.fwd = _CachedForward(pair.model, pair.shared_vocab, pair.device)
        self.rows = 0

    def forward(self, input_ids, attention_mask, position_ids):
        n = input_ids.shape[0]
        self.rows = n
        self.fwd.extra["adapter_names"] = [self.pair.before_name] * n + [self.pair.after_name] * n
        logits = self.fwd(
            torch.cat([input_ids, input_ids]),
            torch.cat([attention_mask, attention_mask]),
            torch.cat([position_ids, position_ids]),
        )
        return logits[n:], logits[:n]

    def keep_rows(self, rows):
        self.fwd.keep_rows(torch.cat([rows, rows + self.rows]))
        self.rows = len(rows)  # a prefill's rows may be copied to its samples before the next forward


class _TwoPassSession(DecodeSession):
    """Two forwards with two caches: the adapter as is, then the reference."""

    def __init__(self, pair: PeftPair, need_before: bool):
        self.pair = pair
        width, dev = pair.shared_vocab, pair.device
        self.after = _CachedForward(pair.model, width, dev)
        self.before = _CachedForward(pair.model, width, dev) if need_before else None

    def forward(self, input_ids, attention_mask, position_ids):
        a = self.after(input_ids, attention_mask, position_ids)
        if self.before is None:
            return a, None
        if self.pair.before_name == BASE_ADAPTER:
            b = self.before(input_ids, attention_mask, position_ids, self.pair.model.disable_adapter())
        else:
            self.before.extra["adapter_names"] = [self.pair.before_name] * input_ids.shape[0]
            b = self.before(input_ids, attention_mask, position_ids)
        return a, b

    def keep_rows(self, rows):
        self.after.keep_rows(rows)
        if self.before is not None:
            self.before.keep_rows(rows)


# Measured with `lda-monitor bench --lora` (docs/performance.md): one pass over the doubled
# batch beats two passes, since it halves the per-call overhead and disable_adapter() toggling.
DEFAULT_PEFT_STRATEGY = "doubled"


class PeftPair(LogitPair):
    """One PEFT model; ``after`` = its active adapter, ``before`` = base or a named adapter."""

    def __init__(self, model, tokenizer, before_adapter: str | None = None, strategy: str = "auto"):
        if strategy == "auto":
            strategy = DEFAULT_PEFT_STRATEGY
        if strategy not in PEFT_STRATEGIES:
            raise ValueError(f"unknown PEFT strategy {strategy!r}; use one of {PEFT_STRATEGIES}")
        if before_adapter is not None and before_adapter not in model.peft_config:
            raise ValueError(
                f"before adapter {before_adapter!r} is not loaded in the PEFT model "
                f"(loaded: {sorted(model.peft_config)}); load it with model.load_adapter(path, name)"
            )
        self.model, self.tokenizer, self.strategy = model, tokenizer, strategy
        self.before_name = before_adapter or BASE_ADAPTER
        self.after_name = model.active_adapter
        self.compatibility = require_compatible(
            tokenizer, after_width=_output_width(model)
        )

    @property
    def device(self):
        return model_device(self.model)

    @property
    def models(self):
        return [self.model]

    def open(self, need_before=True):
        if need_before and self.strategy == "doubled":
            return _DoubledSession(self)
        return _TwoPassSession(self, need_before)

    def describe(self):
        before = "adapters disabled" if self.before_name == BASE_ADAPTER else self.before_name
        return (
            f"PEFT model ({model_device(self.model)}, {self.model.dtype}): "
            f"after=adapter {self.after_name!r}, before={before}, strategy={self.strategy}"
        )


def make_pair(after_model, tokenizer, before_model=None, before_tokenizer=None, **peft_options):
    """Build the right pair: a PEFT model alone gives a :class:`PeftPair`, two models a
    :class:`TwoModelPair`."""
    if before_model is None:
        if not hasattr(after_model, "peft_config"):
            raise ValueError(
                "a before model is needed: pass before_model, or an after model that is a "
                "PEFT model (its adapter-disabled base is the reference)"
            )
        return PeftPair(after_model, tokenizer, **peft_options)
    return TwoModelPair(after_model, before_model, tokenizer, before_tokenizer)
