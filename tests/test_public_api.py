"""The public imports the documentation names (its Development page and every code snippet of the
README and the docs) resolve."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_the_documented_public_imports_resolve():
    text = (ROOT / "docs" / "development.md").read_text()
    section = text.split("Public imports:", 1)[1].split("\n\n", 1)[0]
    dotted = re.findall(r"`(lda_monitor(?:\.\w+)+)`", section)
    assert "from lda_monitor import LDAMonitorCallback" in section and len(dotted) >= 4
    importlib.import_module("lda_monitor").LDAMonitorCallback  # noqa: B018 - the import is the test
    for name in dotted:
        module, attr = name.rsplit(".", 1)
        assert hasattr(importlib.import_module(module), attr), name


def test_every_import_in_a_snippet_resolves():
    checked = 0
    for page in PAGES:
        snippets = re.findall(r"^from (lda_monitor[\w.]*) import ([\w, ]+)$", page.read_text(), flags=re.M)
        for module_name, names in snippets:
            module = importlib.import_module(module_name)
            for attr in names.split(","):
                assert hasattr(module, attr.strip()), f"{page.name}: from {module_name} import {attr.strip()}"
                checked += 1
    assert checked >= 5
