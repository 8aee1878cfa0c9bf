"""Mixed precision (autocast) as part of a measurement.

A Trainer run with ``bf16=True`` or ``fp16=True`` (TRL's configs default to ``bf16=True``) has
accelerate wrap the model's ``forward`` in ``torch.autocast``: the weights keep their dtype while
matmuls run in half precision. The callback's rollouts are computed through that wrapper, so a
record that named only the weights' dtype did not say how its tokens were computed, and an audit
loading the same weights without the wrapper sampled other tokens, silently. Both front ends
therefore *observe* the autocast in force inside each model's forward (what happened, whatever set
it) and record it; the audit wraps its models' forward as accelerate does to reproduce it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import MethodType

import torch

from .dtypes import dtype_name, model_dtype_name

AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}
SIDES = ("policy", "reference")


def _sides(pair) -> dict[str, torch.nn.Module]:
    """The model computing each side of a pair (a PEFT pair's two sides are one model)."""
    models = pair.models
    return {"policy": models[0], "reference": models[1] if len(models) > 1 else models[0]}


@contextmanager
def observed_autocast(pair) -> Iterator[dict[str, str | None]]:
    """Inside the block, fills a dict ``{side: autocast dtype name or None}`` from the first
    forward of each side's model (a pre-hook on its input embeddings runs inside ``forward``,
    after a wrapper has entered its autocast). A side whose model never ran stays absent."""
    seen: dict[str, str | None] = {}
    handles = []
    for side, model in _sides(pair).items():
        def hook(_module, args, side=side):
            if side not in seen:
                device = args[0].device.type if args and torch.is_tensor(args[0]) else "cpu"
                enabled = torch.is_autocast_enabled(device)
                seen[side] = dtype_name(torch.get_autocast_dtype(device)) if enabled else None
        handles.append(model.get_input_embeddings().register_forward_pre_hook(hook))
    try:
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def pair_compute_dtype(pair, autocast: dict[str, str | None] | None = None) -> dict:
    """What a record says it was computed in: ``{"policy": ..., "reference": ...}`` (the
    weights' dtypes) plus ``"autocast": {side: dtype}`` when any side ran under autocast; a run
    without mixed precision keeps the two-key form older records have."""
    sides = _sides(pair)
    computed = {side: model_dtype_name(model) for side, model in sides.items()}
    if autocast and any(autocast.values()):
        computed["autocast"] = {side: autocast.get(side) for side in SIDES}
    return computed


def autocast_forward(model: torch.nn.Module, dtype: str) -> None:
    """Wrap ``model.forward`` in ``torch.autocast(dtype)`` exactly as accelerate's
    ``Accelerator.prepare_model`` does under mixed precision (outputs converted to float32 by
    accelerate's own ``convert_outputs_to_fp32``), so the audit computes as the training run did."""
    from accelerate.utils import convert_outputs_to_fp32

    device = next(model.parameters()).device.type
    context = torch.autocast(device_type=device, dtype=AUTOCAST_DTYPES[dtype])
    model.forward = MethodType(convert_outputs_to_fp32(context(model.forward.__func__)), model)
