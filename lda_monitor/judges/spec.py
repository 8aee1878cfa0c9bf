"""A judge's full configuration as plain data: what decides its verdicts (patterns, rubric text,
model, thresholds), so that two judges under one name can be told apart (``rejudge`` resumes
only verdicts of the very same judge).

Read off the judge object itself, not the spec it was built from, so that equal judges built from
different spellings ("substring:x" or a mapping) describe alike. Run-time state (a circuit
breaker's counters, clients, bound methods) is left out; a model is described by its name or path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re


def _plain(value, depth: int = 0):
    if depth > 8:
        return type(value).__name__
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, re.Pattern):
        return {"pattern": value.pattern, "flags": int(value.flags)}
    if isinstance(value, list | tuple):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, depth + 1) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value), depth + 1)
    if hasattr(value, "evaluate") and hasattr(value, "name"):  # a judge (a composition's member)
        return judge_spec(value, depth + 1)
    path = getattr(value, "name_or_path", None) or getattr(getattr(value, "config", None), "_name_or_path", None)
    if isinstance(path, str):
        return {"model": path}
    if hasattr(value, "tolist"):  # a tensor of ids or values
        return value.tolist()
    return type(value).__name__


def judge_spec(judge, depth: int = 0) -> dict:
    """The judge's class and its public, non-callable attributes as plain data."""
    fields = {k: v for k, v in sorted(vars(judge).items()) if not k.startswith("_") and not callable(v)}
    return {"class": f"{type(judge).__module__}.{type(judge).__qualname__}",
            **{k: _plain(v, depth) for k, v in fields.items()}}


def spec_digest(judge) -> str:
    """A short hash of :func:`judge_spec`."""
    return hashlib.sha256(json.dumps(judge_spec(judge), sort_keys=True, default=str).encode()).hexdigest()[:16]
