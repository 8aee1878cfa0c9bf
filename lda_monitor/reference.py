"""Choosing and holding the reference ("before") model for monitoring a training run.

The reference is fixed at train begin, so every evaluation measures what training changed:

* PEFT policy with a fresh adapter (every ``lora_B`` zero): the adapter-disabled base. No
  weights are copied.
* PEFT policy whose adapter already moved (resumed, pre-trained): the adapter's weights at
  train begin, kept on CPU and attached as a frozen adapter only while an evaluation runs, so
  checkpoints, the optimizer and the trainable set never see it.
* Full fine-tuning: a frozen copy of the weights at train begin, optionally held on CPU (moved
  to the device per evaluation) or in a lower dtype; or a model the user hands over (e.g. the
  trainer's ``ref_model``) after checking it equals the initial policy exactly.
* An explicit checkpoint path.
"""

from __future__ import annotations

import copy
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch

from .pairs import PeftPair, TwoModelPair

SNAPSHOT_ADAPTER = "lda_reference"


def _is_peft(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "disable_adapter")


def _adapter_state(model, adapter: str) -> dict[str, torch.Tensor]:
    marker = f".{adapter}."
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if marker in n}


def _adapter_is_fresh(model, adapter: str) -> bool:
    """LoRA initialises B to zero, so a fresh adapter leaves the base function unchanged."""
    b_weights = [p for n, p in model.named_parameters() if f"lora_B.{adapter}." in n]
    return bool(b_weights) and all(torch.count_nonzero(p) == 0 for p in b_weights)


def _same_weights(a, b) -> bool:
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    if pa.keys() != pb.keys():
        return False
    return all(torch.equal(pa[k].detach().cpu(), pb[k].detach().cpu().to(pa[k].dtype)) for k in pa)


class Reference:
    """Holds the reference and builds a :class:`LogitPair` for the current policy."""

    def __init__(self, kind: str, description: str, model=None, adapter_state=None, offload=False, strategy="auto"):
        self.kind, self.description = kind, description
        self.model, self.adapter_state, self.offload, self.strategy = model, adapter_state, offload, strategy

    @classmethod
    def choose(cls, policy, spec="auto", *, offload=False, dtype=None, strategy="auto") -> Reference:
        if isinstance(spec, torch.nn.Module):
            if _same_weights(policy, spec):
                return cls("given", "the model passed as reference (equal to the initial policy)", model=spec, strategy=strategy)
            warnings.warn("the reference model passed differs from the initial policy; snapshotting the policy instead", stacklevel=2)
            spec = "auto"
        if isinstance(spec, str | Path) and str(spec) != "auto":
            from .models import load_model

            with torch.random.fork_rng(devices=[]):
                model, _ = load_model(spec, dtype=dtype)
            device = next(policy.parameters()).device
            return cls("path", f"checkpoint {spec}", model=model.to(device).eval(), strategy=strategy)
        if _is_peft(policy):
            adapter = policy.active_adapter
            if _adapter_is_fresh(policy, adapter):
                return cls("peft-base", f"base model with adapter {adapter!r} disabled (no copy)", strategy=strategy)
            return cls("peft-snapshot", f"snapshot of adapter {adapter!r} at train begin (frozen, on CPU)",
                       adapter_state=_adapter_state(policy, adapter), strategy=strategy)
        snapshot = copy.deepcopy(policy).eval()
        for p in snapshot.parameters():
            p.requires_grad_(False)
        if dtype is not None:
            from .models import parse_dtype

            snapshot.to(parse_dtype(dtype))
        where = "CPU" if offload else "the policy's device"
        if offload:
            snapshot.to("cpu")
        return cls("snapshot", f"frozen copy of the weights at train begin (on {where})", model=snapshot,
                    offload=offload, strategy=strategy)

    @contextmanager
    def pair(self, policy, tokenizer):
        """A LogitPair valid for the duration of the block (attaches/detaches what it needs)."""
        if self.kind == "peft-base":
            yield PeftPair(policy, tokenizer, strategy=self.strategy)
        elif self.kind == "peft-snapshot":
            with self._temporary_adapter(policy):
                yield PeftPair(policy, tokenizer, before_adapter=SNAPSHOT_ADAPTER, strategy=self.strategy)
        else:
            device = next(policy.parameters()).device
            if self.offload:
                self.model.to(device)
            try:
                yield TwoModelPair(policy, self.model, tokenizer)
            finally:
                if self.offload:
                    self.model.to("cpu")

    @contextmanager
    def _temporary_adapter(self, policy):
        active = policy.active_adapter
        config = copy.deepcopy(policy.peft_config[active])
        config.inference_mode = True
        with torch.random.fork_rng(devices=[]):  # adapter init draws random numbers
            policy.add_adapter(SNAPSHOT_ADAPTER, config)
        try:
            params = dict(policy.named_parameters())
            with torch.no_grad():
                for name, value in self.adapter_state.items():
                    target = params[name.replace(f".{active}.", f".{SNAPSHOT_ADAPTER}.")]
                    target.copy_(value.to(target.device, target.dtype))
                    target.requires_grad_(False)
            policy.set_adapter(active)
            yield
        finally:
            policy.delete_adapter(SNAPSHOT_ADAPTER)
            policy.set_adapter(active)
