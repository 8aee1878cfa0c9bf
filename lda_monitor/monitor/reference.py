"""Choosing and holding the reference ("before") model while a policy trains.

The reference is fixed when training begins, so every evaluation measures what training has
changed so far. :func:`choose_reference` picks it:

* PEFT policy with a fresh LoRA adapter (every ``lora_B`` zero, so the adapter is still the
  identity): the adapter-disabled base - no weights copied.
* PEFT policy whose adapter has already moved (a pre-trained adapter): the adapter's weights at
  train begin, kept on CPU and attached as a frozen adapter only while an evaluation runs. A
  permanently added adapter would be saved into every checkpoint and could join the trainable
  set; a temporary one never meets the optimizer or ``save_pretrained``. The weights are also
  written next to the records so a resume in a new process compares against the same start.
* Full fine-tuning: a frozen copy of the weights at train begin (optionally on CPU, moved to the
  device per evaluation, or in a lower dtype); or a model the user hands over, such as the
  trainer's ``ref_model``, once checked to equal the initial policy exactly - a reference that
  differs, or that TRL keeps syncing to the policy, would measure something else.
* An explicit checkpoint directory.

On resume the choice made at the original train begin is kept (a moved adapter must not turn a
"base" reference into a snapshot of the resumed adapter); what cannot be recovered in a new
process - a full-weight snapshot - is re-taken with a warning that says what changed.
"""

from __future__ import annotations

import copy
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from ..engine.dtypes import model_dtype_name
from ..engine.pairs import PeftPair, TwoModelPair
from ..engine.sharding import is_fsdp2, sharded_frozen_copy
from ..engine.tensors import model_device
from ..errors import UserInputError

SNAPSHOT_ADAPTER = "lda_monitor_reference"
ADAPTER_FILE = "reference_adapter.safetensors"

KIND_PEFT_BASE = "peft-base"
KIND_ADAPTER_SNAPSHOT = "adapter-snapshot"
KIND_WEIGHT_SNAPSHOT = "weight-snapshot"
KIND_MODULE = "given-model"
KIND_PATH = "checkpoint"


def is_peft_model(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "disable_adapter")


def adapter_is_fresh(model, adapter: str) -> bool:
    """True when every LoRA ``B`` of ``adapter`` is zero: the adapter adds exactly nothing."""
    b_weights = [
        p for n, p in model.named_parameters()
        if f"lora_B.{adapter}." in n or n.endswith(f"lora_embedding_B.{adapter}")
    ]
    return bool(b_weights) and all(not torch.any(p) for p in b_weights)


def same_weights(a, b) -> bool:
    """Exact equality of every named parameter (same names, dtypes and values)."""
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    if pa.keys() != pb.keys():
        return False
    return all(
        pa[k].dtype == pb[k].dtype and pa[k].shape == pb[k].shape
        and torch.equal(pa[k].detach(), pb[k].detach().to(pa[k].device))
        for k in pa
    )


def frozen_copy(model, device=None, dtype: torch.dtype | None = None):
    """A frozen eval-mode copy of ``model``. Parameters and buffers are copied straight to
    ``device`` (and ``dtype`` for floating tensors), so offloading to CPU never needs a second
    full copy on the accelerator."""
    if is_fsdp2(model):
        if device is not None:
            raise UserInputError("reference_offload does not apply to a sharded (FSDP2) policy: its snapshot "
                                 "is sharded like the policy; leave reference_offload off")
        return sharded_frozen_copy(model, dtype)
    memo = {}
    for tensor in (*model.parameters(), *model.buffers()):
        target_dtype = dtype if dtype is not None and tensor.is_floating_point() else tensor.dtype
        clone = tensor.detach().to(device=device or tensor.device, dtype=target_dtype, copy=True)
        is_param = isinstance(tensor, torch.nn.Parameter)
        memo[id(tensor)] = torch.nn.Parameter(clone, requires_grad=False) if is_param else clone
    return copy.deepcopy(model, memo).eval()


def _adapter_weights(model, adapter: str) -> dict[str, torch.Tensor]:
    marker = f".{adapter}."
    return {
        n: p.detach().to("cpu", copy=True).contiguous()
        for n, p in model.named_parameters()
        if marker in n or n.endswith(f".{adapter}")
    }


@dataclass
class Reference:
    """The chosen reference and how to pair it with the policy for one evaluation."""

    kind: str
    description: str
    module: torch.nn.Module | None = None  # weight snapshot, given model or loaded checkpoint
    tokenizer: object = None  # a loaded checkpoint's own tokenizer (vocabulary check)
    adapter: str | None = None  # the policy adapter an adapter snapshot was taken from
    adapter_weights: dict | None = None
    offload: bool = False
    strategy: str = "auto"

    def info(self) -> dict:
        return {"kind": self.kind, "description": self.description}

    def compute_dtype(self, policy) -> dict:
        """The dtypes an evaluation computes in: the policy's, and the reference's (a PEFT
        reference is the policy's own base weights; a held module may be held in another dtype)."""
        policy_dtype = model_dtype_name(policy)
        held = model_dtype_name(self.module) if self.module is not None else None
        return {"policy": policy_dtype, "reference": held or policy_dtype}

    @contextmanager
    def pair(self, policy, tokenizer):
        """A :class:`~lda_monitor.engine.pairs.LogitPair` valid inside the block; whatever it attaches or
        moves for the evaluation is detached or moved back on exit, even on error."""
        if self.kind == KIND_PEFT_BASE:
            yield PeftPair(policy, tokenizer, strategy=self.strategy)
        elif self.kind == KIND_ADAPTER_SNAPSHOT:
            with self._temporary_adapter(policy):
                yield PeftPair(policy, tokenizer, before_adapter=SNAPSHOT_ADAPTER, strategy=self.strategy)
        else:
            if self.offload:
                self.module.to(model_device(policy))
            try:
                yield TwoModelPair(policy, self.module, tokenizer, self.tokenizer)
            finally:
                if self.offload:
                    self.module.to("cpu")

    @contextmanager
    def _temporary_adapter(self, policy):
        active = policy.active_adapter
        if active != self.adapter:
            raise RuntimeError(
                f"the reference is a snapshot of adapter {self.adapter!r} but the active adapter is {active!r}"
            )
        config = copy.deepcopy(policy.peft_config[active])
        config.inference_mode = True  # PEFT freezes an inference-mode adapter's parameters
        with torch.random.fork_rng(devices=[]):  # LoRA init draws from the global RNG
            policy.add_adapter(SNAPSHOT_ADAPTER, config)
        try:
            params = dict(policy.named_parameters())
            with torch.no_grad():
                for name, value in self.adapter_weights.items():
                    target = params[_rename_adapter(name, active, SNAPSHOT_ADAPTER)]
                    target.copy_(value)
                    target.requires_grad_(False)
            yield
        finally:
            policy.delete_adapter(SNAPSHOT_ADAPTER)

    def save_adapter(self, directory: Path) -> None:
        from safetensors.torch import save_file

        directory.mkdir(parents=True, exist_ok=True)
        save_file(self.adapter_weights, str(directory / ADAPTER_FILE), metadata={"adapter": self.adapter})


def _rename_adapter(name: str, old: str, new: str) -> str:
    if name.endswith(f".{old}"):
        return name[: -len(old)] + new
    return name.replace(f".{old}.", f".{new}.")


def _load_adapter_snapshot(path: Path, strategy: str) -> Reference:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        adapter = f.metadata()["adapter"]
    return Reference(
        KIND_ADAPTER_SNAPSHOT, f"adapter {adapter!r} as it stood at train begin (frozen, on CPU, from {path})",
        adapter=adapter, adapter_weights=load_file(str(path)), strategy=strategy,
    )


def _is_synced(module, callbacks) -> bool:
    """TRL's SyncRefModelCallback keeps pulling the reference towards the policy."""
    return any(type(cb).__name__ == "SyncRefModelCallback" and getattr(cb, "ref_model", None) is module
               for cb in callbacks)


def choose_reference(
    policy,
    spec=None,
    *,
    step: int = 0,
    previous: dict | None = None,
    store_dir: Path | None = None,
    offload: bool = False,
    dtype: torch.dtype | None = None,
    strategy: str = "auto",
    callbacks=(),
) -> Reference:
    """Pick the reference for ``policy`` at train begin (``step`` 0) or on resume (``step`` > 0,
    ``previous`` = the ``info()`` recorded when the run started).

    ``spec``: None for the automatic choice, a checkpoint directory, or a model.
    ``store_dir``: where an adapter snapshot is written and found again on resume.
    """
    if isinstance(spec, torch.nn.Module):
        reference = _given_module(policy, spec, step, strategy, callbacks)
        if reference is not None:
            return reference
    elif spec is not None:
        from ..engine.models import load_model

        model, tokenizer = load_model(spec, device="cpu" if offload else model_device(policy), dtype=dtype)
        for p in model.parameters():
            p.requires_grad_(False)
        return Reference(KIND_PATH, f"checkpoint {spec} (frozen, on {_placement(offload)})", module=model.eval(),
                         tokenizer=tokenizer, offload=offload, strategy=strategy)
    previous_kind = (previous or {}).get("kind")
    if is_peft_model(policy):
        adapter = policy.active_adapter
        saved = store_dir / ADAPTER_FILE if store_dir is not None else None
        if step > 0 and previous_kind == KIND_PEFT_BASE:
            return _peft_base(adapter, strategy)
        if step > 0 and previous_kind == KIND_ADAPTER_SNAPSHOT and saved is not None and saved.is_file():
            return _load_adapter_snapshot(saved, strategy)
        if step == 0 and adapter_is_fresh(policy, adapter):
            return _peft_base(adapter, strategy)
        _warn_if_resumed(step, f"adapter {adapter!r}")
        reference = Reference(
            KIND_ADAPTER_SNAPSHOT, f"adapter {adapter!r} as it stood at step {step} (frozen, on CPU)",
            adapter=adapter, adapter_weights=_adapter_weights(policy, adapter), strategy=strategy,
        )
        if store_dir is not None:
            reference.save_adapter(store_dir)
        return reference
    _warn_if_resumed(step, "weights")
    dtype_note = f", {str(dtype).removeprefix('torch.')}" if dtype is not None else ""
    return Reference(
        KIND_WEIGHT_SNAPSHOT, f"frozen copy of the weights at step {step} (on {_placement(offload)}{dtype_note})",
        module=frozen_copy(policy, "cpu" if offload else None, dtype), offload=offload, strategy=strategy,
    )


def _placement(offload: bool) -> str:
    return "CPU, moved to the device per evaluation" if offload else "the policy's device"


def _peft_base(adapter: str, strategy: str) -> Reference:
    return Reference(KIND_PEFT_BASE, f"base model with adapter {adapter!r} disabled (no weights copied)",
                     adapter=adapter, strategy=strategy)


def _given_module(policy, module, step: int, strategy: str, callbacks) -> Reference | None:
    """The user's model as the reference, or None (with a warning) when it would mislead."""
    name = type(module).__name__
    if _is_synced(module, callbacks):
        warnings.warn(
            f"the reference model ({name}) is synced towards the policy during training (TRL "
            "sync_ref_model), so it is not a fixed reference; snapshotting the policy instead", stacklevel=3,
        )
        return None
    if step == 0 and not same_weights(policy, module):
        warnings.warn(
            f"the reference model ({name}) differs from the policy at train begin, so it is not the "
            "initial policy; snapshotting the policy instead (pass a checkpoint path to compare "
            "against a different model on purpose)", stacklevel=3,
        )
        return None
    checked = "equal to the policy at train begin" if step == 0 else "not re-checked on resume"
    return Reference(KIND_MODULE, f"the given {name} ({checked})", module=module, strategy=strategy)


def _warn_if_resumed(step: int, what: str) -> None:
    if step > 0:
        warnings.warn(
            f"resuming at step {step} without the reference taken at train begin: the reference is "
            f"now the policy's {what} at step {step}, so rates compare against the resumed model. "
            "Pass reference=<path of the starting checkpoint> to compare against the start.",
            stacklevel=3,
        )
