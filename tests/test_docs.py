"""The README is the front door and the site is the manual: the README stays short, every page the
site's navigation names exists, every docs link in the README and the docs resolves, the README's
test command is the one CI runs, and the tables generated into the docs hold every declared key."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
LINK = re.compile(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)")


def nav_pages(entries) -> list[str]:
    pages = []
    for entry in entries:
        for value in (entry.values() if isinstance(entry, dict) else [entry]):
            pages += nav_pages(value) if isinstance(value, list) else [value]
    return pages


def load_hooks():
    spec = importlib.util.spec_from_file_location("mkdocs_hooks", ROOT / "scripts" / "mkdocs_hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_fits_on_two_screens():
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move detail into docs/ (the limit is 200)"


def test_every_page_in_the_nav_exists():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages = nav_pages(config["nav"])
    assert len(pages) >= 15
    missing = [p for p in pages if not (DOCS / p).is_file()]
    assert not missing, f"mkdocs.yml names pages docs/ does not have: {missing}"


def test_every_docs_link_resolves():
    for source in [README, *DOCS.rglob("*.md")]:
        for target in LINK.findall(source.read_text()):
            if "://" not in target:
                assert (source.parent / target).resolve().is_file(), f"{source.relative_to(ROOT)} links to {target}"


def test_the_readme_test_command_is_the_one_ci_runs():
    (command,) = [line for line in README.read_text().splitlines() if "python -m pytest -q" in line
                  and line.startswith("pip install")]
    assert command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_every_documented_flag_exists():
    """Each ``lda-monitor SUB ...`` (or ``-m lda_monitor SUB``) line in a bash block of the README or
    the docs names only options SUB has: a renamed flag must not leave a command that cannot run."""
    from lda_monitor.cli import build_parser

    subcommands = build_parser()._subparsers._group_actions[0].choices
    checked = 0
    for page in [README, *DOCS.rglob("*.md")]:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                command = re.search(r"(?:lda-monitor|-m lda_monitor) ([\w-]+)(.*)", line.split(" #")[0])
                if not command:
                    continue
                name, rest = command.groups()
                assert name in subcommands, f"{page.name}: no subcommand {name!r}"
                options = {o for action in subcommands[name]._actions for o in action.option_strings}
                for flag in re.findall(r"(?<![\w-])(--[\w-]+)", rest):
                    assert flag in options, f"{page.name}: lda-monitor {name} has no {flag}"
                    checked += 1
    assert checked >= 40


def test_the_config_page_gets_every_declared_key():
    from lda_monitor.config.audit import AuditConfig
    from lda_monitor.config.monitor import MonitorConfig

    page = load_hooks().expand((DOCS / "configuration.md").read_text())
    assert "<!-- generated" not in page
    rows = set(re.findall(r"^\| `(\w+)` \|", page, flags=re.M))
    assert rows == {f.name for config in (AuditConfig, MonitorConfig) for f in fields(config)}


def test_the_callback_page_gets_every_logged_metric():
    from lda_monitor.core.summary import flat_fields

    page = load_hooks().expand((DOCS / "callback.md").read_text())
    assert "<!-- generated" not in page
    documented = set(re.findall(r"`(lda/[\w/<>.]+)`", page))
    logged = {f"lda/{flat.name}" for flat in flat_fields() if flat.metric}
    assert {"lda/flag_rate", "lda/natural_rate_hi", "lda/coherence_plain", "lda/judge_failures"} <= documented
    assert logged <= documented, f"metrics logged but not on the page: {sorted(logged - documented)}"


def test_an_unknown_generated_table_stops_the_build():
    with pytest.raises(ValueError, match="unknown generated table 'config_tabel'.*config_table"):
        load_hooks().expand("text\n<!-- generated: config_tabel -->\n")


def test_docstrings_read_as_markdown_on_the_api_pages():
    pytest.importorskip("griffe", reason="the docs extra (pip install -e '.[docs]'; dev includes it)")
    spec = importlib.util.spec_from_file_location("griffe_rst", ROOT / "scripts" / "griffe_rst.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    docstring = ("Options are :class:`~lda_monitor.monitor.config.MonitorConfig` keys, see :func:`a.b.c`.\n"
                 "Use it so::\n\n    monitor = LDAMonitorCallback()\n\n"
                 "When it evaluates\n    At step 0 and every\n    n steps.\n\nAfter.")
    assert module.markdown(docstring).splitlines() == [
        "Options are `MonitorConfig` keys, see `a.b.c`.", "Use it so:", "", "    monitor = LDAMonitorCallback()", "",
        "**When it evaluates**", "", "At step 0 and every", "n steps.", "", "After."]
