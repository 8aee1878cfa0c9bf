"""Config files and the config table: one YAML file drives every front end.

The callback's :class:`~lda_monitor.monitor.config.MonitorConfig` and the audit's
:class:`~lda_monitor.audit.config.AuditConfig` are the one measurement spec plus their own
fields. This module knows them both (it sits above the front ends, never in the core):

* :func:`read_config_file`: the keys a front end uses; a key of the other front end is accepted
  and ignored with one note, an unknown key is refused with "did you mean";
* :func:`markdown_table`: the README's config table, which a test holds equal to the README.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from dataclasses import MISSING, fields
from pathlib import Path

from .errors import UserInputError

# Every front end that reads a config file: its name for users, and its class (imported lazily).
FRONT_ENDS = {
    "the training callback": "lda_monitor.monitor.config:MonitorConfig",
    "audit-checkpoints": "lda_monitor.audit.config:AuditConfig",
}
_PATH_KEYS = ("prompts", "reference")
_SYMBOLIC_PATHS = ("auto", "base", "first")


def front_end_class(name: str):
    module, attr = FRONT_ENDS[name].split(":")
    return getattr(importlib.import_module(module), attr)


def read_config_file(path, for_front_end: str, *, note=None) -> dict:
    """The keys of a YAML config that ``for_front_end`` uses, paths resolved against the file.

    Keys of another front end are dropped with one note (so one file drives the callback and the
    audit); unknown keys are refused with a "did you mean" hint."""
    import yaml

    path = Path(path).expanduser()
    if not path.is_file():
        raise UserInputError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise UserInputError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise UserInputError(f"{path}: a config file is a mapping of keys to values")
    own = {f.name for f in fields(front_end_class(for_front_end))}
    check_keys(data, str(path))
    foreign = sorted(set(data) - own)
    if foreign:
        message = f"note: {path}: keys for other front ends ignored by {for_front_end}: {', '.join(foreign)}"
        (note or (lambda text: print(text, file=sys.stderr)))(message)
    kept = {k: v for k, v in data.items() if k in own}
    for key in _PATH_KEYS:
        value = kept.get(key)
        if isinstance(value, str) and value not in _SYMBOLIC_PATHS and (path.parent / value).exists():
            kept[key] = str(path.parent / value)
    return kept


def all_keys() -> list[str]:
    """Every key some front end reads, in declaration order."""
    out: list[str] = []
    for name in FRONT_ENDS:
        out += [f.name for f in fields(front_end_class(name)) if f.name not in out]
    return out


def check_keys(keys, where: str, known=None) -> None:
    """Refuse keys no front end knows, with a "did you mean" hint (a typo must not be ignored)."""
    known = list(known) if known is not None else all_keys()
    unknown = sorted(set(keys) - set(known))
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, known, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise UserInputError(f"{where}: unknown config keys {', '.join(hints)}; known keys: {', '.join(known)}")


def markdown_table() -> str:
    """The README's config table: every key, where it applies, its default and its help."""
    from .core.measurement import Measurement

    shared = {f.name for f in fields(Measurement)}
    owners: dict[str, list[str]] = {}
    declared: dict[str, object] = {}
    labels = {"the training callback": "callback", "audit-checkpoints": "audit"}
    for front_end in FRONT_ENDS:
        for f in fields(front_end_class(front_end)):
            owners.setdefault(f.name, []).append(labels[front_end])
            declared.setdefault(f.name, f)
    lines = ["| key | used by | default | meaning |", "|---|---|---|---|"]
    for name, f in declared.items():
        where = "both (the measurement)" if name in shared else " and ".join(owners[name])
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else None)
        shown = "required" if name == "prompts" else f"`{default!r}`".replace("|", "\\|")
        help_text = f.metadata.get("help", "").replace("|", "\\|")
        lines.append(f"| `{name}` | {where} | {shown} | {help_text} |")
    return "\n".join(lines)
