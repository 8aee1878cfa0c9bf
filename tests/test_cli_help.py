"""Every flag of every subcommand says what it does; a --no-X flag says it turns X off."""

from __future__ import annotations

import argparse

from lda_monitor.cli import build_parser


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_flag_of_every_subcommand_has_help():
    missing = [f"{name} {'/'.join(a.option_strings) or a.dest}"
               for name, sub in _subparsers(build_parser()).items() for a in sub._actions
               if not isinstance(a, argparse._HelpAction) and not (a.help or "").strip()]
    assert not missing, missing


def test_no_flags_read_as_turning_the_setting_off():
    seen = []
    for name, sub in _subparsers(build_parser()).items():
        for a in sub._actions:
            for flag in a.option_strings:
                if flag.startswith("--no-") and isinstance(a, argparse._StoreFalseAction):
                    seen.append(f"{name} {flag}")
                    assert a.help.startswith("turn off"), (name, flag, a.help)
    assert {"audit-checkpoints --no-natural-rate", "audit-checkpoints --no-chat-template",
            "sample --no-chat-template"} <= set(seen)


def test_rendered_help_has_no_markup():
    parser = build_parser()
    texts = [parser.format_help(), *(sub.format_help() for sub in _subparsers(parser).values())]
    assert not [t for t in texts if "``" in t]
    assert parser.format_help().split("\n\n")[1].startswith("LDA monitor:")
