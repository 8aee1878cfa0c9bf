"""Config fields as command-line flags: one declaration, no second list of options.

A config class (:class:`~lda_monitor.core.measurement.Measurement` and the front ends built on it)
declares each setting once with its help text. :func:`add_field_arguments` turns fields into
argparse flags: ``--max-new-tokens N`` for ``max_new_tokens``, ``--no-chat-template`` for a field
that defaults to True (its help, which describes the setting, is introduced as what the flag
turns off), repeatable flags for lists. A flag the user does not give is absent from
the namespace (:func:`given_fields`), so a config file's value is only overridden on purpose.
YAML files and the docs' config table come from the same fields (:mod:`lda_monitor.config.files`).
"""

from __future__ import annotations

import argparse
import math
import types
import typing
from dataclasses import MISSING, fields


def real_number(text: str) -> float:
    """argparse type: a finite real number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def real_list(text: str) -> tuple[float, ...]:
    """argparse type: comma-separated finite real numbers."""
    return tuple(real_number(part.strip()) for part in text.split(",") if part.strip())


def _base_type(annotation):
    """``int`` for ``int | None``, ``list`` for ``list[str]``: what a flag's text converts to."""
    if isinstance(annotation, str):
        annotation = eval(annotation, {"typing": typing}, {})  # our own annotations
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = args[0] if len(args) == 1 else str
    origin = typing.get_origin(annotation)
    return origin if origin in (list, tuple) else annotation


def add_field_arguments(parser: argparse.ArgumentParser, config_class, names) -> None:
    """Add one flag per named field of ``config_class``, with its help text and default shown.

    A field's metadata may name its ``flag``, ``metavar``, ``parse`` (the text's converter),
    ``choices``, and ``required`` (a flag the command cannot run without)."""
    by_name = {f.name: f for f in fields(config_class)}
    for name in names:
        f = by_name[name]
        meta = f.metadata
        flag = meta.get("flag") or "--" + name.replace("_", "-")
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else None)
        kind = _base_type(f.type)
        help_text = meta.get("help", "")
        options = dict(dest=name, default=argparse.SUPPRESS)
        if kind is bool:
            if default is True:  # the help describes the setting; the flag turns it off
                flag = meta.get("flag") or "--no-" + name.replace("_", "-")
                parser.add_argument(flag, action="store_false", help=f"turn off (on by default): {help_text}",
                                    **options)
            else:
                parser.add_argument(flag, action="store_true", help=help_text, **options)
            continue
        if kind in (list, tuple) and "parse" not in meta:
            parser.add_argument(flag, action="append", metavar=meta.get("metavar"), help=help_text, **options)
            continue
        converter = meta.get("parse") or {int: int, float: real_number}.get(kind, str)
        shown = f" (default: {default})" if default not in (None, "", []) else ""
        if "choices" in meta:  # argparse names the choices in place of a metavar
            options["choices"] = meta["choices"]
        else:
            options["metavar"] = meta.get("metavar") or {int: "N", float: "X"}.get(kind, "TEXT")
        if meta.get("required"):
            options.update(required=True, default=None)
            shown = ""
        parser.add_argument(flag, type=converter, help=help_text + shown, **options)


def given_fields(args: argparse.Namespace, config_class) -> dict:
    """The field values a command line set explicitly (flags left out are absent)."""
    names = {f.name for f in fields(config_class)}
    return {k: v for k, v in vars(args).items() if k in names}
