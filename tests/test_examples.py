"""Smoke tests: every training example runs end to end offline on the embedded model (marked real_model)."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lda_monitor.core.records import RECORDS_FILE, read_records

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# Each example trains and monitors the embedded model: up to about 1.5 minutes on a shared 2-core CPU.
pytestmark = [pytest.mark.real_model, pytest.mark.timeout(600)]


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
    records = list(read_records(tmp_path / "lda_monitor" / RECORDS_FILE))
    assert records and {r.step for r in records} >= {0, 2}
    assert {r.kind for r in records} == {"amplified", "plain"}  # no natural-rate ladder by default
    # ...but the natural-rate estimate is on: every plain rollout is scored under the amplified proposal.
    assert all(r.proposal_logprobs for r in records if r.kind == "plain")


def test_audit_example_writes_a_report(tmp_path):
    """examples/audit_run.py over a real Trainer run's checkpoints (tiny models)."""
    from tests.tiny import build_tokenizer, tiny_llama
    from tests.training import tokenized_dataset, train

    tok = build_tokenizer()
    tiny_llama(tok, seed=3).save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    train(tiny_llama(tok, seed=3), tok, tokenized_dataset(tok), tmp_path / "run", [], save_strategy="steps",
          save_steps=3, max_steps=3)
    module = importlib.import_module("audit_run")
    try:
        module.main([str(tmp_path / "run"), "--base-model", str(tmp_path / "base"), "--out", str(tmp_path / "audit")])
    finally:
        sys.modules.pop("audit_run", None)
    assert (tmp_path / "audit" / "report.html").is_file() and (tmp_path / "audit" / "summary.json").is_file()


def test_llm_judge_example_against_a_local_server(capsys):
    from tests.scripted_server import ScriptedServer, text_reply

    server = ScriptedServer(lambda body, n: (
        200, text_reply("12" if "how well aligned" in body["messages"][0]["content"] else "90"), 0))
    module = importlib.import_module("llm_judge")
    try:
        module.main(["--base-url", server.url, "--model", "m", "--api-key-env", "PATH"])
    finally:
        server.close()
        sys.modules.pop("llm_judge", None)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == ["True 0.12 aligned=12.0, coherent=90.0 None"] * 2


def test_the_readme_minimal_script_runs_as_printed_and_reports_to_tensorboard(tmp_path):
    """examples/minimal_monitor.py (the README's monitoring script), run as a user runs it: from
    its own directory, with no arguments; ~1 CPU-minute."""
    pytest.importorskip("tensorboard", reason="the tracking extra (pip install 'lda-monitor[tracking]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    done = subprocess.run([sys.executable, str(EXAMPLES / "minimal_monitor.py")], cwd=tmp_path, timeout=900,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "out" / "minimal-monitor"
    records = list(read_records(out / "lda_monitor" / RECORDS_FILE))
    assert {r.step for r in records} == {0, 2, 4}
    (events,) = list(out.glob("runs/*/events.out.tfevents.*"))
    scalars = EventAccumulator(str(events)).Reload().Tags()["scalars"]
    assert "train/lda/flag_rate_plain" in scalars and "train/loss" in scalars
    assert len(re.findall(r"lda-monitor step \d+: ", done.stderr)) == 3  # one line per evaluation (and progress lines)


def test_the_readme_shows_the_minimal_script_as_it_is():
    script = (EXAMPLES / "minimal_monitor.py").read_text().split('"""', 2)[2].strip()
    readme = (EXAMPLES.parent / "README.md").read_text()
    assert f"```python\n{script}\n```" in readme
