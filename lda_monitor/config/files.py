"""Config files and the config table: one YAML file drives every front end.

Each front end's config class (the callback's
:class:`~lda_monitor.config.monitor.MonitorConfig`, the audit's
:class:`~lda_monitor.config.audit.AuditConfig`) is the one measurement spec plus its own fields.
This module knows none of them: the front ends are passed in as :class:`FrontEnd` values
(:data:`~lda_monitor.config.front_ends.FRONT_ENDS`), so nothing here imports a config class.

* :func:`read_config_file`: the keys a front end uses; a key of another front end is accepted
  and ignored with one note, an unknown key is refused with "did you mean";
* :func:`markdown_table`: the docs' config table, generated into docs/configuration.md when the
  site is built.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, fields, is_dataclass
from pathlib import Path

from ..errors import UserInputError

_PATH_KEYS = ("prompts", "reference")
_SYMBOLIC_PATHS = ("auto", "base", "first")


@dataclass(frozen=True)
class FrontEnd:
    """A front end that reads config files: its name in messages, its label in the table, and its
    config dataclass."""

    name: str
    label: str
    config: type


def _front_end(config: type, front_ends: Sequence[FrontEnd]) -> FrontEnd:
    for front_end in front_ends:
        if front_end.config is config:
            return front_end
    raise ValueError(f"{config.__name__} is not one of the front ends {[f.name for f in front_ends]}")


def read_config_file(path, config: type, front_ends: Sequence[FrontEnd], *, note=None) -> dict:
    """The keys of a YAML config that the front end of ``config`` (one of ``front_ends``) uses,
    paths resolved against the file.

    Keys of another front end are dropped with one note (so one file drives the callback and the
    audit); unknown keys are refused with a "did you mean" hint."""
    import yaml

    front_end = _front_end(config, front_ends)
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserInputError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise UserInputError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise UserInputError(f"{path}: a config file is a mapping of keys to values")
    own = {f.name for f in fields(config)}
    check_keys(data, str(path), all_keys(front_ends))
    foreign = sorted(set(data) - own)
    if foreign:
        message = f"note: {path}: keys for other front ends ignored by {front_end.name}: {', '.join(foreign)}"
        (note or (lambda text: print(text, file=sys.stderr)))(message)
    kept = {k: v for k, v in data.items() if k in own}
    for key in _PATH_KEYS:
        value = kept.get(key)
        if isinstance(value, str) and value not in _SYMBOLIC_PATHS and (path.parent / value).exists():
            kept[key] = str(path.parent / value)
    return kept


def all_keys(front_ends: Sequence[FrontEnd]) -> list[str]:
    """Every key some front end reads, in declaration order."""
    out: list[str] = []
    for front_end in front_ends:
        out += [f.name for f in fields(front_end.config) if f.name not in out]
    return out


def check_keys(keys, where: str, known) -> None:
    """Refuse keys not in ``known``, with a "did you mean" hint (a typo must not be ignored)."""
    known = list(known)
    unknown = sorted(set(keys) - set(known))
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, known, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise UserInputError(f"{where}: unknown config keys {', '.join(hints)}; known keys: {', '.join(known)}")


def markdown_table(front_ends: Sequence[FrontEnd]) -> str:
    """The docs' config table: every key, where it applies, its default and its help. The
    fields of the dataclass every front end's config extends are the shared measurement."""
    base = next(c for c in front_ends[0].config.__mro__
                if is_dataclass(c) and all(issubclass(fe.config, c) for fe in front_ends))
    shared = {f.name for f in fields(base)}
    owners: dict[str, list[str]] = {}
    declared: dict[str, object] = {}
    for front_end in front_ends:
        for f in fields(front_end.config):
            owners.setdefault(f.name, []).append(front_end.label)
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
