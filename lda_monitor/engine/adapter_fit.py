"""Does a LoRA adapter fit a base model? Decided from shapes alone, before any weight is loaded.

Loading an adapter onto the wrong base costs the base's load (tens of seconds for a real model)
and then fails inside PEFT with a traceback of one size-mismatch line per layer. The adapter's
safetensors header gives each LoRA matrix's shape, and the base's config builds the model on the
meta device (no memory, milliseconds): each adapted layer's input and output widths must match.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserInputError

ADAPTER_WEIGHTS = "adapter_model.safetensors"
_PREFIX = "base_model.model."
_LORA = {".lora_A.weight": ("in_features", 1), ".lora_B.weight": ("out_features", 0)}


def _adapter_shapes(adapter: Path) -> dict[str, tuple[str, int]]:
    """``{module path: (attribute, width)}`` for each LoRA matrix, from the safetensors header."""
    from safetensors import safe_open

    shapes = {}
    with safe_open(str(adapter / ADAPTER_WEIGHTS), "pt") as weights:
        for key in weights.keys():
            for suffix, (attribute, axis) in _LORA.items():
                if key.startswith(_PREFIX) and key.endswith(suffix):
                    module = key[len(_PREFIX):-len(suffix)]
                    shapes[f"{module}:{attribute}"] = (attribute, weights.get_slice(key).get_shape()[axis])
    return shapes


def _meta_model(base: Path, trust_remote_code: bool):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(base), trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)


def check_adapter_fits(adapter: Path, base: Path, *, trust_remote_code: bool = False) -> None:
    """Raise one clear :class:`UserInputError` naming both models and the fix when the adapter's
    LoRA matrices do not fit ``base``'s layers. Adapters without a safetensors file (pickle
    weights) or without LoRA matrices are left to PEFT."""
    if not (adapter / ADAPTER_WEIGHTS).is_file():
        return
    shapes = _adapter_shapes(adapter)
    if not shapes:
        return
    model = _meta_model(base, trust_remote_code)
    for key, (attribute, width) in shapes.items():
        module_path = key.rsplit(":", 1)[0]
        try:
            have = getattr(model.get_submodule(module_path), attribute, width)
        except AttributeError:
            have = None  # the base has no such layer
        if have != width:
            declared = json.loads((adapter / "adapter_config.json").read_text()).get("base_model_name_or_path")
            there = f"has no layer {module_path}" if have is None else f"has {attribute}={have} at {module_path}"
            raise UserInputError(
                f"the adapter in {adapter} was not trained on the base model {base}: that base {there}, the "
                f"adapter expects {width} (its adapter_config.json names base {declared!r}); pass the model it "
                "was trained from as --base-model (base=...), or leave it out to use the named one")
