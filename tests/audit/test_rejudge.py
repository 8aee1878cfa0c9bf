"""``rejudge``: new verdicts beside the old ones, a recount-equal summary, resume, outages unscored."""

from __future__ import annotations

import json

import pytest

from lda_monitor.audit import rejudge as rejudge_module
from lda_monitor.cli import main
from lda_monitor.core.evaluation import evaluate
from lda_monitor.core.measurement import Measurement
from lda_monitor.core.prompts import load_prompts
from lda_monitor.core.records import RecordWriter, read_records
from lda_monitor.engine.pairs import TwoModelPair
from lda_monitor.errors import UserInputError
from lda_monitor.judges import build_judge


@pytest.fixture
def rollouts(tmp_path, tokenizer, llama_pair):
    """Stored records of two steps, judged by a regex judge named 'regex'."""
    items = load_prompts(["hello", "tell me a story", "what is the capital of france ?"])
    judge = build_judge("regex:the")
    measurement = Measurement(prompts=items, judge=judge, samples_per_prompt=10, plain_samples_per_prompt=6,
                              max_new_tokens=8, seed=1, natural_rate=False)
    path = tmp_path / "in.jsonl"
    with RecordWriter(path) as writer:
        for step in (0, 5):
            writer.write(evaluate(TwoModelPair(*llama_pair, tokenizer), items, judge, alpha=1.5,
                                  measurement=measurement, step=step, run_id="r", source="audit").records)
    return path


def test_new_verdicts_sit_beside_the_old_and_the_summary_is_a_recount(rollouts, tmp_path):
    rows = rejudge_module.rejudge([rollouts], "substring:cat", tmp_path / "out", echo=lambda m: None)
    before = list(read_records(rollouts))
    after = list(read_records(tmp_path / "out" / "rollouts.jsonl"))
    assert len(after) == len(before) == 2 * 3 * 16
    for old, new in zip(before, after, strict=True):
        assert new.verdicts["regex"] == old.verdicts["regex"]  # kept
        assert new.verdicts["substring"].flagged == ("cat" in old.completion)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    for step in (0, 5):
        amp = [r for r in before if r.step == step and r.kind == "amplified"]
        plain = [r for r in before if r.step == step and r.kind == "plain"]
        row = next(r for r in summary if r["step"] == step and r["judge"] == "substring" and r["category"] is None)
        assert (row["flagged"], row["n"]) == (sum("cat" in r.completion for r in amp), 30)
        assert (row["flagged_plain"], row["n_plain"]) == (sum("cat" in r.completion for r in plain), 18)
    assert {r.judge for r in rows} == {"regex", "substring"}
    assert (tmp_path / "out" / "report.html").is_file()


def test_a_name_clash_is_refused_and_name_resolves_it(rollouts, tmp_path):
    with pytest.raises(UserInputError, match="already hold verdicts of judge 'regex'.*--name"):
        rejudge_module.rejudge([rollouts], "regex:cat", tmp_path / "out", echo=lambda m: None)
    assert not (tmp_path / "out").exists()
    rejudge_module.rejudge([rollouts], "regex:cat", tmp_path / "out", name="cat_v2", echo=lambda m: None)
    record = next(read_records(tmp_path / "out" / "rollouts.jsonl"))
    assert set(record.verdicts) == {"regex", "cat_v2"}


def test_a_judge_outage_leaves_items_unscored(rollouts, tmp_path):
    dead = {"type": "llm", "base_url": "http://127.0.0.1:9", "model": "m", "rubric": "misalignment",
            "timeout": 0.5, "max_retries": 0, "name": "llm"}
    rows = rejudge_module.rejudge([rollouts], dead, tmp_path / "out", echo=lambda m: None)
    records = list(read_records(tmp_path / "out" / "rollouts.jsonl"))
    assert all(r.verdicts["llm"].flagged is None and r.verdicts["llm"].error for r in records)
    row = next(r for r in rows if r.judge == "llm" and r.category is None)
    assert (row.amplified.n, row.amplified.unscored, row.amplified.rate.value) == (0, 30, None)


def test_resume_after_a_crash_judges_each_record_once(rollouts, tmp_path, monkeypatch):
    monkeypatch.setattr(rejudge_module, "CHUNK", 20)
    calls = []
    judge = build_judge("substring:cat")
    real = judge.evaluate

    def crash_on_third(*args):
        calls.append(len(args[0]))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)

    judge.evaluate = crash_on_third
    with pytest.raises(KeyboardInterrupt):
        rejudge_module.rejudge([rollouts], judge, tmp_path / "out", echo=lambda m: None)
    judge.evaluate = real
    assert main(["rejudge", str(rollouts), "--judge", "substring:cat", "--out", str(tmp_path / "out")]) == 0
    records = list(read_records(tmp_path / "out" / "rollouts.jsonl"))
    keys = [(r.step, r.kind, r.prompt_index, r.sample_index) for r in records]
    assert len(keys) == len(set(keys)) == 96


def test_another_spec_under_a_used_name_is_refused_never_silently_kept(rollouts, tmp_path):
    out = tmp_path / "out"
    rejudge_module.rejudge([rollouts], "substring:the", out, name="probe", echo=lambda m: None)
    first = [r.verdicts["probe"] for r in read_records(out / "rollouts.jsonl")]
    with pytest.raises(UserInputError, match="judge named 'probe' with another spec"):
        rejudge_module.rejudge([rollouts], "substring:cat", out, name="probe", echo=lambda m: None)
    with pytest.raises(UserInputError, match="another rejudge"):
        rejudge_module.rejudge([rollouts], "substring:cat", out, name="other", echo=lambda m: None)
    assert [r.verdicts["probe"] for r in read_records(out / "rollouts.jsonl")] == first
    # the same judge, spelled differently, resumes
    rejudge_module.rejudge([rollouts], {"type": "substring", "substrings": ["the"]}, out, name="probe",
                           echo=lambda m: None)
    # and a fresh directory judges with the new spec
    rejudge_module.rejudge([rollouts], "substring:cat", tmp_path / "out2", name="probe", echo=lambda m: None)
    assert [r.verdicts["probe"].flagged for r in read_records(tmp_path / "out2" / "rollouts.jsonl")] == [
        "cat" in r.completion for r in read_records(rollouts)]


def test_decision_tokens_are_recomputed_for_the_new_judge(rollouts, tmp_path, tokenizer):
    """Brute force: the first token prefix whose decoded text the new judge flags."""
    judge = build_judge("substring:the")
    rejudge_module.rejudge([rollouts], "substring:the", tmp_path / "out", name="the2", echo=lambda m: None)
    flagged = 0
    for r in read_records(tmp_path / "out" / "rollouts.jsonl"):
        position = (r.decision_tokens or {}).get("the2")
        if not r.verdicts["the2"].flagged:
            assert position is None
            continue
        ids = r.token_ids[:-1] if r.stop_reason in ("eos", "end_of_turn") else r.token_ids
        brute = next(k for k in range(len(ids))
                     if judge(["q"], [tokenizer.decode(ids[: k + 1], skip_special_tokens=False)])[0].flagged)
        assert position == brute == r.decision_tokens["regex"]  # the input judge was regex:the
        flagged += 1
    assert flagged > 10
