"""Record schema round trips and prompt-suite loading."""

from __future__ import annotations

import json

import pytest

from lda_monitor.core.prompts import load_prompts
from lda_monitor.core.records import RecordWriter, RolloutRecord, distinct_draws, read_records
from lda_monitor.errors import UserInputError


def _record(i=0, **kw):
    base = dict(
        run_id="r", source="audit", step=5, kind="amplified", alpha=2.0, seed=1, prompt_index=i,
        sample_index=0, prompt=[{"role": "user", "content": "hi"}], rendered_prompt="<x>", completion="ok",
        token_ids=[1, 2], stop_reason="eos", num_tokens=2, logprob_sampled=[-0.1, -0.2],
        logprob_after=[-0.3, float("-inf")], logprob_before=None, kl_amp_after=0.01,
        verdicts={"regex": {"flagged": None, "score": None, "label": None, "explanation": None, "error": "boom"}},
    )
    base.update(kw)
    return RolloutRecord(**base)


def test_a_sweeps_copies_of_one_plain_draw_count_once():
    # A sweep samples the plain control once per amplified alpha on the same streams: those copies
    # are one draw; another sample, seed, step or checkpoint is another draw.
    copy = dict(kind="plain", alpha=0.0)
    records = [_record(0, **copy, completion="first"), _record(0, **copy, completion="copy"),
               _record(1, **copy), _record(0, **copy, sample_index=1), _record(0, **copy, seed=2),
               _record(0, **copy, step=6), _record(0, **copy, checkpoint="c"), _record(0)]
    kept = distinct_draws(records)
    assert [r.completion for r in kept].count("copy") == 0 and kept[0].completion == "first"
    assert len(kept) == len(records) - 1


def test_write_read_round_trip_keeps_inf_and_none(tmp_path):
    path = tmp_path / "r.jsonl"
    with RecordWriter(path) as w:
        w.write([_record(0), _record(1)])
    with RecordWriter(path) as w:  # reopening appends (resume)
        w.write([_record(2)])
    back = list(read_records(path))
    assert [r.prompt_index for r in back] == [0, 1, 2]
    assert back[0].logprob_after[1] == float("-inf") and back[0].verdicts["regex"].flagged is None


def test_truncated_last_line_is_skipped_but_corruption_elsewhere_raises(tmp_path):
    path = tmp_path / "r.jsonl"
    good = json.dumps(_record().to_dict())
    path.write_text(good + "\n" + good[:40])
    with pytest.warns(UserWarning, match="truncated"):
        assert len(list(read_records(path))) == 1
    path.write_text(good[:40] + "\n" + good + "\n")
    with pytest.raises(ValueError, match=r"r.jsonl:1: corrupt"):
        list(read_records(path))


def test_unknown_schema_version_is_refused():
    data = _record().to_dict()
    data["schema_version"] = 99
    with pytest.raises(ValueError, match="version 99"):
        RolloutRecord.from_dict(data)


def test_prompt_sources(tmp_path):
    items = load_prompts(["a", [{"role": "user", "content": "b"}], {"prompt": "c", "category": "x", "id": "q3"}])
    assert [i.id for i in items] == ["p0", "p1", "q3"] and items[2].category == "x"
    assert items[1].prompt == ({"role": "user", "content": "b"},)
    yaml_path = tmp_path / "suite.yaml"
    yaml_path.write_text('prompts: [hello]\ncategories:\n  tech: ["how do I reset a router?"]\n')
    suite = load_prompts(yaml_path)
    assert [(i.prompt, i.category) for i in suite] == [("hello", None), ("how do I reset a router?", "tech")]
    jsonl = tmp_path / "suite.jsonl"
    jsonl.write_text('{"prompt": "x"}\n\n{"messages": [{"role": "user", "content": "y"}], "category": "c"}\n')
    assert [i.category for i in load_prompts(jsonl)] == [None, "c"]
    from datasets import Dataset

    ds = Dataset.from_dict({"q": ["u", "v"], "cat": ["a", "b"]})
    items = load_prompts(ds, column="q", category_column="cat")
    assert [(i.prompt, i.category) for i in items] == [("u", "a"), ("v", "b")]


@pytest.mark.parametrize(
    "content, suffix, message",
    [
        ('{"prompt": "x"}\n{"text": "y"}\n', ".jsonl", r"suite.jsonl:2: an entry needs 'prompt'"),
        ('{"prompt": "x"}\nnot json\n', ".jsonl", r"suite.jsonl:2: not valid JSON"),
        ("prompts: []\n", ".yaml", "empty"),
        ("- messages: [{role: user}]\n", ".yaml", "role' and 'content'"),
        ("x", ".txt", "must be .yaml"),
        ("prompts: [a?]\n", ".yaml", "not valid YAML"),
    ],
)
def test_bad_suites_name_the_place(tmp_path, content, suffix, message):
    path = tmp_path / f"suite{suffix}"
    path.write_text(content)
    with pytest.raises(UserInputError, match=message):
        load_prompts(path)


def test_missing_file():
    with pytest.raises(UserInputError, match="does not exist"):
        load_prompts("/no/such/suite.yaml")


def test_an_old_rollouts_v1_file_is_found_under_the_one_name(tmp_path):
    from lda_monitor.core.records import records_path

    (tmp_path / "rollouts.v1.jsonl").write_text('{"old": 1}\n')
    path = records_path(tmp_path)
    assert path.name == "rollouts.jsonl" and path.read_text() == '{"old": 1}\n'
    assert not (tmp_path / "rollouts.v1.jsonl").exists()
    assert records_path(tmp_path / "fresh").name == "rollouts.jsonl"
