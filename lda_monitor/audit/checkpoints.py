"""Finding and classifying saved checkpoints for the offline audit.

``checkpoint-<step>`` directories under a run directory (sorted by step) or explicit paths;
each is a full model (``config.json`` + weights) or a PEFT adapter (``adapter_config.json``).
Half-written ``tmp-checkpoint-*`` directories and incomplete ones are skipped with a note;
sharded DeepSpeed/FSDP states without consolidated weights stop the audit with the command that
consolidates them, since auditing a partial model would be silently wrong.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserInputError


class NoCheckpointsFound(UserInputError):
    """No complete checkpoint yet: an error for an audit, a reason to wait for ``--watch``."""


_STEP = re.compile(r"checkpoint-(\d+)$")


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int
    kind: str  # "full" | "adapter"


def _has_weights(path: Path) -> bool:
    return any(path.glob("*.safetensors")) or any(path.glob("*.bin"))


def _sharded_hint(path: Path) -> str | None:
    if any(path.glob("global_step*/*model_states.pt")) or any(path.glob("global_step*/*optim_states.pt")):
        return (f"{path} holds DeepSpeed ZeRO shards but no consolidated weights; run "
                f"`python {path}/zero_to_fp32.py {path} {path}` first")
    if any(path.glob("pytorch_model_fsdp*")) or any(path.glob("**/*.distcp")):
        return (f"{path} holds FSDP sharded state but no consolidated weights; run "
                f"`accelerate merge-weights {path}/pytorch_model_fsdp_0 {path}` first")
    return None


def classify(path: Path, step: int | None = None) -> tuple[Checkpoint | None, str | None]:
    """(checkpoint, None) or (None, a note saying why it is skipped); raises for shards."""
    match = _STEP.search(path.name)
    step = step if step is not None else (int(match.group(1)) if match else 0)
    if path.name.startswith("tmp-checkpoint"):
        return None, f"skipped {path}: a checkpoint still being written (tmp-checkpoint-*)"
    if (path / "adapter_config.json").is_file():
        if not any(path.glob("adapter_model.*")):
            return None, f"skipped {path}: adapter_config.json but no adapter weights (incomplete)"
        return Checkpoint(path, step, "adapter"), None
    if (path / "config.json").is_file() and _has_weights(path):
        return Checkpoint(path, step, "full"), None
    hint = _sharded_hint(path)
    if hint:
        raise UserInputError(hint)
    return None, f"skipped {path}: no config.json with weights and no adapter (incomplete)"


def discover(paths) -> tuple[list[Checkpoint], list[str]]:
    """Checkpoints under run dirs or given explicitly, sorted by step; and skip notes."""
    found, notes = [], []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.is_dir():
            raise UserInputError(f"{raw} is not a directory; give a run dir or checkpoint dirs")
        children = sorted(p for p in path.iterdir() if p.is_dir() and ("checkpoint-" in p.name))
        if _STEP.search(path.name) or (path / "config.json").is_file() or (path / "adapter_config.json").is_file():
            children = [path]
        for child in children:
            checkpoint, note = classify(child)
            if checkpoint:
                found.append(checkpoint)
            if note:
                notes.append(note)
    found.sort(key=lambda c: c.step)
    if not found:
        raise NoCheckpointsFound(f"no checkpoints found in {', '.join(map(str, paths))} "
                             "(expected checkpoint-<step> dirs with weights)")
    return found, notes


def _saved_monitor(path: Path) -> list[dict]:
    """The lda-monitor callback's saved state entries (``args`` and ``attributes``) in this
    checkpoint's ``trainer_state.json``; empty when no callback ran or the file is unreadable."""
    state_file = Path(path) / "trainer_state.json"
    if not state_file.is_file():
        return []
    try:
        saved = (json.loads(state_file.read_text()).get("stateful_callbacks") or {}).get("LDAMonitorCallback")
    except (OSError, ValueError):
        return []
    return [entry or {} for entry in (saved if isinstance(saved, list) else [saved])]


def recorded_compute_dtype(path: Path) -> dict | None:
    """The dtypes the monitor computed its rollouts in at this checkpoint (``{"policy": ...,
    "reference": ...}``, and ``"autocast"`` under mixed precision; saved with its state in
    ``trainer_state.json``), or None when no lda-monitor callback ran or it predates the record."""
    for entry in _saved_monitor(path):
        recorded = (entry.get("attributes") or {}).get("monitor_state", {}).get("compute_dtype")
        if recorded:
            return recorded
    return None


def recorded_size_budget(path: Path) -> float | None:
    """The ``max_monitor_fraction`` the monitor ran with at this checkpoint, or None: with it the
    callback shrinks evaluations to its time budget, sizes an audit of the configured measurement
    does not reproduce."""
    for entry in _saved_monitor(path):
        fraction = (entry.get("args") or {}).get("max_monitor_fraction")
        if fraction is not None:
            return fraction
    return None
