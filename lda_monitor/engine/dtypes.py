"""The compute dtype: chosen once, by what the hardware does fast, unless the user names one.

bfloat16 is only a speed-up where the hardware has it. On a CPU without native bf16 (AVX2 only:
many cloud CPUs and laptops) a bf16 matmul is ~250x *slower* than float32, and older GPUs (T4,
V100) have no bf16 either. So ``"auto"`` means:

* a CUDA device: bfloat16 where it is supported, float16 otherwise;
* a CPU with native bf16 (AMX / AVX512-BF16, as torch's oneDNN reports it): bfloat16;
* any other CPU: float32.

``"auto"`` is the default everywhere a model is loaded (:func:`lda_monitor.engine.models.load_model`,
every command, the demo), so Python and the command line compute alike; ``"checkpoint"`` keeps the
stored dtype. Whatever ``"auto"`` picks is printed once per process with the reason, so a figure
can always be read with its dtype.

The compute dtype is part of a measurement: in bfloat16 a rollout's tokens differ from float32's
(and depend on the batch's shape), so the callback records the dtype it computed in and the audit
reproduces it (:func:`lda_monitor.audit.auditor.audit_dtype`).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ..errors import UserInputError

if TYPE_CHECKING:
    import torch

AUTO = "auto"
DEFAULT_DTYPE = AUTO  # load_model's, every command's and the demo's
CHECKPOINT = "checkpoint"
# Names a user may type -> torch dtype attribute (torch is imported only when one is resolved,
# so configs that mention a dtype are checked without importing it).
_NAMES = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
}
DTYPE_HELP = (
    "compute dtype: auto (bfloat16 where the hardware has it natively, float16 on CUDA without "
    "bf16, else float32), checkpoint (as stored), float32, bfloat16 or float16"
)
_announced: set[str] = set()


def cpu_has_native_bf16() -> bool:
    """True when torch's CPU kernels run bfloat16 natively (AVX512-BF16 or AMX)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_model_name() -> str:
    """The CPU's model name (as ``lscpu`` shows it), so a figure names the machine it came from."""
    import platform

    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def auto_dtype(device=None) -> tuple[torch.dtype, str]:
    """The fast dtype for ``device`` (default: CUDA if available, else CPU) and why."""
    import torch

    device = torch.device(device) if device is not None else None
    on_cuda = device.type == "cuda" if device is not None else torch.cuda.is_available()
    if on_cuda:
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, "this GPU supports bfloat16"
        return torch.float16, "this GPU has no bfloat16"
    if cpu_has_native_bf16():
        return torch.bfloat16, "this CPU has native bfloat16"
    capability = torch.backends.cpu.get_cpu_capability()
    return torch.float32, f"this CPU has no native bfloat16 ({capability}; bf16 would be far slower)"


def resolve_dtype(dtype, device=None, *, announce: bool = True) -> torch.dtype | None:
    """A torch dtype from what a user gives: ``None``/"checkpoint" keep the stored dtype (None),
    "auto" asks :func:`auto_dtype`, a name or a ``torch.dtype`` is taken as it is."""
    if dtype is None or not isinstance(dtype, str):
        return dtype
    name = str(dtype).lower()
    if name == CHECKPOINT:
        return None
    if name == AUTO:
        chosen, reason = auto_dtype(device)
        if announce:
            _announce(chosen, reason)
        return chosen
    if name not in _NAMES:
        known = sorted([AUTO, CHECKPOINT, *_NAMES])
        raise UserInputError(f"unknown dtype {dtype!r}; use one of {known}")
    import torch

    return getattr(torch, _NAMES[name])


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def model_dtype_name(model) -> str | None:
    """The floating dtype ``model`` computes in (its first floating parameter), e.g. "float32";
    None for a model without floating parameters (or None)."""
    if model is None:
        return None
    for param in model.parameters():
        if param.is_floating_point():
            return dtype_name(param.dtype)
    return None


def _announce(chosen: torch.dtype, reason: str) -> None:
    message = f"lda-monitor: computing in {dtype_name(chosen)}: {reason}"
    if message not in _announced:
        _announced.add(message)
        print(message, file=sys.stderr)
