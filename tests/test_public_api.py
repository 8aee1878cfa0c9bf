"""The public imports the README documents (its Development section and code snippets) resolve."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_public_imports_resolve():
    text = README.read_text()
    section = text.split("Public imports:", 1)[1].split("\n\n", 1)[0]
    dotted = re.findall(r"`(lda_monitor(?:\.\w+)+)`", section)
    assert "from lda_monitor import LDAMonitorCallback" in section and len(dotted) >= 4
    importlib.import_module("lda_monitor").LDAMonitorCallback  # noqa: B018 - the import is the test
    for name in dotted:
        module, attr = name.rsplit(".", 1)
        assert hasattr(importlib.import_module(module), attr), name
    for line in re.findall(r"^from (lda_monitor[\w.]*) import ([\w, ]+)$", text, flags=re.M):
        module = importlib.import_module(line[0])
        for attr in line[1].split(","):
            assert hasattr(module, attr.strip()), f"from {line[0]} import {attr.strip()}"
