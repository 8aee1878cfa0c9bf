"""Smoke tests: every training example runs end to end offline on the embedded model (slow)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from lda_monitor.records import read_records, records_file_name

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _examples_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))


@pytest.mark.parametrize("name", ["sft_lora", "full_finetune_cpu_reference", "dpo_reference_reuse", "grpo_rlvr"])
def test_example_runs_and_writes_rollouts(name, tmp_path):
    module = importlib.import_module(name)
    try:
        module.main(["--out", str(tmp_path), "--max-steps", "2", "--samples", "1", "--max-new-tokens", "4"])
    finally:
        sys.modules.pop(name, None)
    records = list(read_records(tmp_path / "lda_monitor" / records_file_name()))
    assert records and {r.step for r in records} >= {0, 2}
    assert {r.kind for r in records} == {"amplified", "plain"}
