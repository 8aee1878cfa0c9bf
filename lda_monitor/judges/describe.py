"""What a judge is, as plain data for run configs and reports: its type, name and whatever decides
its verdicts (patterns, rubric and its thresholds, model, server, labels, members).

A judge's name alone ("regex") does not say what was measured; two runs named alike can flag
different things. Read from the built judge object, so a judge passed as an object is described
as fully as one built from a spec. Only the attributes listed in :data:`_ATTRIBUTES` are read, so
no secret can appear: a built-in judge holds only the *name* of the environment variable its API
key is in.
"""

from __future__ import annotations

import re

_ATTRIBUTES = ("rule", "patterns", "base_url", "model", "api_key_env", "rubric", "flag_labels", "threshold")


def _value(value):
    if isinstance(value, re.Pattern):
        return value.pattern + (" (ignore case)" if value.flags & re.IGNORECASE else "")
    if isinstance(value, list | tuple):
        return [_value(v) for v in value]
    if hasattr(value, "questions"):  # a rubric
        return {"name": value.name, "questions": [
            {"name": q.name, "template": q.template,
             **{k: getattr(q, k) for k in ("flag_below", "flag_above") if getattr(q, k) is not None}}
            for q in value.questions]}
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    config = getattr(value, "config", None)  # a loaded model: where it came from
    return getattr(config, "name_or_path", None) or type(value).__name__


def describe_judge(judge) -> dict:
    """The judge as a JSON-safe mapping (composition members nested under ``members``)."""
    out = {"type": type(judge).__name__, "name": getattr(judge, "name", None)}
    for attribute in _ATTRIBUTES:
        value = getattr(judge, attribute, None)
        if value is not None:
            out[attribute] = _value(value)
    members = getattr(judge, "members", None)
    if members:
        out["members"] = [describe_judge(m) for m in members]
    return out

