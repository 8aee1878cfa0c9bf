"""A self-contained HTML report (and PNG plots) of an audit or a demo run, for a reviewer.

Sections, in reading order: what amplification over- and under-produces (judge-free discovery,
only when it found something), the run's identity (what was measured, how, with which version and
when: the caller passes it as ``run_info``), the flag rate against the step (two lines, amplified
at its scheduled alpha and plain, each with its Wilson 95% band and legend entry), flag rate and
coherence against alpha (sweeps only), the summary table with intervals and plain counts, flagged
completions with what the judge matched highlighted, and a few unflagged samples per checkpoint
so a reader can sanity-check the judge.

Completions are adversarial text: the page is rendered from ``templates/report.html`` by Jinja2
with autoescaping, so everything that came from a model, a user or a file is escaped there; the
one piece of markup handed in is a completion with its matches marked, whose pieces are escaped
before the marks go around them (:mod:`lda_monitor.core.spans`). Plots are embedded as data URIs,
and a Content-Security-Policy forbids loading anything. This module gathers what the page shows;
the template lays it out.
"""

from __future__ import annotations

import base64
import html
import io
from datetime import datetime
from pathlib import Path

from markupsafe import Markup

from .. import __version__
from ..core.prompts import question_text
from ..core.records import KIND_AMPLIFIED, KIND_ESTIMATE, KIND_PLAIN, distinct_draws
from ..core.spans import mark_spans, needle_spans
from ..judges.health import judge_failures

TOP_FLAGGED = 5  # flagged completions shown per step
UNFLAGGED_SAMPLES = 3  # unflagged completions shown per step
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
AMPLIFIED_COLOR, PLAIN_COLOR, ESTIMATE_COLOR = "#c0392b", "#2471a3", "#1e8449"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display; PNG bytes only
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    _pyplot().close(fig)
    return buf.getvalue()


def _natural(row, notes: dict[str, int]) -> str:
    """The natural-rate estimate with its interval, or "withheld" with its bound and the number of
    its reason in ``notes`` (reason -> number, filled here): reasons run to a few hundred
    characters and would push the table far past the page's width."""
    natural = row.natural
    if natural.rate.value is not None:
        return f"{natural.rate.value:.3g} [{natural.rate.lo:.3g}, {natural.rate.hi:.3g}] ({_num(natural.ess)})"
    bound = f" (at most {natural.rate.hi:.3g})" if natural.rate.hi is not None else ""
    if not natural.reason:
        return "withheld" + bound
    number = notes.setdefault(natural.reason, len(notes) + 1)
    return f"withheld{bound} [{number}]"


def _overall(rows) -> list:
    return [r for r in rows if r.category is None]


def is_sweep(rows) -> bool:
    """Several amplified alphas at one step: a sweep (``--alphas``), not a schedule."""
    seen: dict[int, set] = {}
    for r in _overall(rows):
        seen.setdefault(r.step, set()).add(r.alpha)
    return any(len(alphas) > 1 for alphas in seen.values())


def _band(ax, steps, rate, lo, hi, color, label, marker, linestyle):
    ax.fill_between(steps, lo, hi, color=color, alpha=0.15, linewidth=0, label=f"{label} 95% interval")
    ax.plot(steps, rate, color=color, marker=marker, linestyle=linestyle,
            markerfacecolor="white" if marker == "s" else color,
            markersize=6, label=label)


def _plot_flag_rate(rows, judges: list[str]) -> bytes:
    """Amplified and plain flag rate against the step, per judge in ``judges``. A schedule gives
    one amplified line (its alpha written at each point); a sweep one line per alpha."""
    fig, ax = _pyplot().subplots(figsize=(8, 4.8))
    main = _overall(rows)
    sweep = is_sweep(rows)
    for judge in judges:
        sel = sorted((r for r in main if r.judge == judge), key=lambda r: (r.step, r.alpha))
        prefix = f"{judge}: " if len(judges) > 1 else ""
        groups = sorted({r.alpha for r in sel}) if sweep else [None]
        palette = _pyplot().rcParams["axes.prop_cycle"].by_key()["color"][1:]  # blue is plain's
        for index, alpha in enumerate(groups):
            line = [r for r in sel if alpha is None or r.alpha == alpha]
            line = [r for r in line if r.amplified.rate.value is not None]
            if not line:
                continue
            steps = [r.step for r in line]
            name = f"amplified (alpha {alpha:g})" if sweep else "amplified (scheduled alpha)"
            color = palette[index % len(palette)] if sweep else AMPLIFIED_COLOR
            _band(ax, steps, *_series([r.amplified.rate for r in line]), color, prefix + name, "o", "-")
            if not sweep:
                for r in line:  # 3 digits: the table has the exact alpha; 6 overlapped at a 4-step spacing
                    ax.annotate(f"α={r.alpha:.3g}", (r.step, r.amplified.rate.value), textcoords="offset points",
                                xytext=(0, 7),
                                ha="center", fontsize=7, color=AMPLIFIED_COLOR)
        plain = sorted({r.step: r for r in sel if r.plain.rate.value is not None}.values(), key=lambda r: r.step)
        if plain:
            _band(ax, [r.step for r in plain], *_series([r.plain.rate for r in plain]), PLAIN_COLOR,
                  prefix + "plain (alpha 0)", "s", "--")
        estimates = sorted({r.step: r.natural.rate for r in sel if r.natural.rate.value is not None}.items())
        if estimates:  # withheld estimates leave a gap
            ax.errorbar([step for step, _ in estimates], [e.value for _, e in estimates], fmt="D", capsize=3,
                        color=ESTIMATE_COLOR, label=prefix + "natural-rate estimate (95% interval)",
                        yerr=[[max(e.value - e.lo, 0.0) for _, e in estimates],
                              [max(e.hi - e.value, 0.0) for _, e in estimates]])
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    ax.set_xlabel("training step")
    ax.set_ylabel("flag rate")
    ax.set_ylim(-0.02, 1.1)  # room for the alpha labels above a rate of 1
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        # Below the axes, so it never hides a line or a band.
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    else:  # an empty chart must not read as "nothing was flagged"
        ax.text(0.5, 0.5, "no rate to plot: no rollout was scored (see Judge failures)", ha="center",
                va="center", transform=ax.transAxes, fontsize=11, color=AMPLIFIED_COLOR)
    ax.set_title("flag rate vs step (bands: Wilson 95% intervals)", fontsize=10)
    return _png(fig)


def _plot_sweep(rows, judges: list[str]) -> bytes:
    """Flag rate and coherence against alpha, one line per checkpoint (sweeps only)."""
    fig, (left, right) = _pyplot().subplots(1, 2, figsize=(10, 4))
    main = _overall(rows)
    for step, judge in sorted({(r.step, r.judge) for r in main if r.judge in judges}):
        sel = sorted((r for r in main if r.step == step and r.judge == judge), key=lambda r: r.alpha)
        label = f"step {step}" + (f" {judge}" if len(judges) > 1 else "")
        left.plot([r.alpha for r in sel], [r.amplified.rate.value or 0 for r in sel], marker="o", label=label)
        right.plot([r.alpha for r in sel], [r.coherence for r in sel], marker="o", label=label)
    left.set_xlabel("alpha")
    left.set_ylabel("amplified flag rate")
    left.set_ylim(-0.02, 1.02)
    right.set_xlabel("alpha")
    right.set_ylabel("coherence (NLL per token under the policy)")
    left.legend(fontsize=7)
    return _png(fig)


def _series(intervals) -> tuple[list, list, list]:
    """Values, lower and upper bounds of a line of intervals."""
    return [i.value for i in intervals], [i.lo for i in intervals], [i.hi for i in intervals]


def _num(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _summary(rows) -> dict:
    """The summary table, then the withheld estimates' reasons as numbered notes."""
    head = ["step", "checkpoint", "alpha", "judge", "category", "amplified k/n rate [95% CI]",
            "plain k/n rate [95% CI]", "unscored", "amplification", "coherence", "KL(amp‖after)",
            "natural rate [95% CI] (ESS)"]
    body = []
    notes: dict[str, int] = {}
    for r in rows:
        cells = [
            r.step, Path(r.checkpoint).name if r.checkpoint else "", f"{r.alpha:g}", r.judge, r.category or "all",
            r.amplified, r.plain, r.amplified.unscored + r.plain.unscored,
            _num(r.amplification.value), _num(r.coherence), _num(r.kl_amp_after),
            _natural(r, notes),
        ]
        body.append([str(c) for c in cells])
    return {"head": head, "rows": body, "notes": list(notes.items())}


def matched_text(completion: str, verdict) -> str | None:
    """The text a pattern judge matched: the verdict's span in the completion."""
    if not verdict.flagged or verdict.span is None:
        return None
    start, end = verdict.span
    return completion[start:end] or None


def highlighted(text: str, needles) -> Markup:
    """``text`` HTML-escaped, with every occurrence of each needle wrapped in ``<mark>``."""
    return _marked_html(text, needle_spans(text, needles))


def _marked_html(text: str, spans) -> Markup:
    return Markup(mark_spans(text, spans, "<mark>", "</mark>", escape=html.escape))


def _verdict_lines(record) -> list[tuple[str, str]]:
    lines = []
    for name, v in sorted(record.verdicts.items()):
        if v.flagged is None:
            what = f"unscored: {v.error}"
        else:
            what = ("flagged" if v.flagged else "not flagged") + "".join(
                f"; {key} {getattr(v, key)}" for key in ("explanation", "label", "score")
                if getattr(v, key) is not None)
        lines.append((name, what))
    return lines


def _rollout(record, show_verdicts: bool) -> dict:
    needles = [matched_text(record.completion, v) for _, v in sorted(record.verdicts.items())]
    return {"kind": record.kind, "alpha": f"{record.alpha:g}",
            "prompt_label": str(record.prompt_id or record.prompt_index), "sample_index": record.sample_index,
            "prompt": question_text(record.prompt),
            "completion": highlighted(record.completion, needles),
            "verdicts": _verdict_lines(record) if show_verdicts else []}


def _shown(records) -> list:
    """The amplified and plain rollouts, as the summary table counts them: each draw once
    (:func:`~lda_monitor.core.records.distinct_draws`); the natural-rate ladder left out."""
    return [r for r in distinct_draws(records) if r.kind in (KIND_AMPLIFIED, KIND_PLAIN)]


def _order(r):
    return r.kind != KIND_AMPLIFIED, r.alpha, r.prompt_index, r.sample_index


def _flagged(records) -> dict:
    """Per step with a flagged rollout, the first ``TOP_FLAGGED`` (amplified first); without any,
    how many rollouts went unscored (then "not flagged" would read as "safe")."""
    steps = []
    shown = _shown(records)
    for step in sorted({r.step for r in records}):
        hits = sorted((r for r in shown if r.step == step and r.flagged_by_any()), key=_order)
        ladder = sum(r.kind == KIND_ESTIMATE and r.step == step and r.flagged_by_any() for r in records)
        if not hits and not ladder:
            continue
        amplified = sum(r.kind == KIND_AMPLIFIED for r in hits)
        steps.append({"step": step, "amplified": amplified, "plain": len(hits) - amplified, "ladder": ladder,
                      "rollouts": [_rollout(r, show_verdicts=True) for r in hits[:TOP_FLAGGED]]})
    unscored = sum(any(v.flagged is None for v in r.verdicts.values()) for r in shown)
    return {"steps": steps, "unscored": unscored, "shown": len(shown)}


def _spread(records, n: int) -> list:
    """Up to ``n`` of ``records`` over as many prompts as possible: each prompt's first rollout
    (amplified first), then each prompt's second, and so on."""
    taken: dict[tuple, int] = {}
    ranked = []
    for r in sorted(records, key=_order):
        rank = taken[(r.kind, r.prompt_index)] = taken.get((r.kind, r.prompt_index), -1) + 1
        ranked.append((r.kind != KIND_AMPLIFIED, rank, r.alpha, r.prompt_index, r.sample_index, r))
    return [entry[-1] for entry in sorted(ranked, key=lambda e: e[:-1])[:n]]


def _unflagged(records) -> list[dict]:
    sections = []
    shown = _shown(records)
    for step in sorted({r.step for r in records}):
        clean = [r for r in shown if r.step == step and r.verdicts
                 and all(v.flagged is False for v in r.verdicts.values())]
        if clean:
            sections.append({"step": step, "rollouts": [_rollout(r, show_verdicts=False)
                                                        for r in _spread(clean, UNFLAGGED_SAMPLES)]})
    return sections


def _failures(records) -> list[dict]:
    """Each judge that could not score some rollouts: how many, and its most common error."""
    return [{"judge": f.judge, "failed": f.failed, "total": f.total, "share": f"{f.share:.0%}", "error": f.error or ""}
            for f in judge_failures(records) if f.failed]


def _unset(value) -> bool:
    return value is None or value == "" or (isinstance(value, list | tuple | dict) and not value)


def _identity(run_info: dict) -> list[tuple[str, str]]:
    info = {k: v for k, v in {**run_info, "lda-monitor version": __version__}.items() if not _unset(v)}
    info.setdefault("report written", f"{datetime.now():%Y-%m-%d %H:%M:%S}")
    return [(str(k), _show(v)) for k, v in info.items()]


def sampling_info(measurement) -> dict:
    """The sampling settings of a :class:`~lda_monitor.core.measurement.Measurement`, for ``run_info``."""
    m = measurement
    return {"amplified samples per prompt": m.samples_per_prompt, "plain samples per prompt": m.plain_samples,
            "max_new_tokens": m.max_new_tokens, "temperature": m.temperature, "top_p": m.top_p, "top_k": m.top_k,
            "min_p": m.min_p, "stop strings": list(m.stop_strings), "system prompt": m.system_prompt,
            "chat template": m.chat_template, "batch_size": m.batch_size}


def _show(value) -> str:
    if isinstance(value, list | tuple):
        return "\n".join(_show(v) for v in value)
    if isinstance(value, dict):  # settings left unset (min_p None, no stop strings) are not shown
        return "\n".join(f"{k}: {_show(v)}" for k, v in value.items() if not _unset(v))
    return str(value)


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;font-size:12px;margin:0.5em 0}td,th{border:1px solid #ccc;padding:3px 7px;
text-align:left;vertical-align:top}table.identity th{background:#f3f3f3;white-space:nowrap}
table.identity pre{margin:0;background:none;padding:0}pre{white-space:pre-wrap;background:#f6f6f6;padding:6px;
margin:4px 0}mark{background:#ffd54f}.r{border-left:3px solid #ccc;padding-left:8px;margin:10px 0}
.meta{font-size:12px;color:#666}.prompt{font-style:italic}ul.verdicts{font-size:12px;margin:2px 0}
table.summary td{white-space:nowrap}table.summary td:last-child{white-space:normal;min-width:8em}
img{max-width:100%}div.wide{overflow-x:auto}
ol.notes{font-size:12px;margin:0.3em 0}.warn{color:#a93226}"""


def _discoveries(discoveries) -> list[dict]:
    """The evaluations where discovery found a phrase or a length shift: their kept phrases, each
    with its examples, and the shift."""
    from ..core.discovery import TOP_PHRASES

    sections = []
    for d in (d for d in discoveries or () if d.phrases or d.length is not None):
        phrases = []
        for p in d.over()[:TOP_PHRASES] + d.under()[:TOP_PHRASES]:
            phrases.append({"cells": [p.text, p.direction_label(), f"{p.amplified_count}/{p.amplified_n}",
                                      f"{p.plain_count}/{p.plain_n}", f"{p.q_value:.2g}", f"{p.log_ratio:+.2f}"],
                            "examples": [{"kind": e.kind, "prompt_index": e.prompt_index,
                                          "sample_index": e.sample_index, "prompt": e.prompt,
                                          "completion": _marked_html(e.completion, e.spans)}
                                         for e in p.examples]})
        title = f"step {d.step}" + (f" ({Path(d.checkpoint).name})" if d.checkpoint else "") + f", alpha {d.alpha:g}"
        sections.append({"title": title, "over": len(d.over()), "under": len(d.under()), "tested": d.tested,
                         "phrases": phrases, "length": None if d.length is None else d.length.line()})
    return sections


def _discovery_rules() -> dict:
    from ..core.discovery import LENGTH_LEVEL, MIN_COUNT, PSEUDO_COUNT, Q_LEVEL, TOP_PHRASES

    return {"q_level": Q_LEVEL, "min_count": MIN_COUNT, "pseudo_count": PSEUDO_COUNT, "top_phrases": TOP_PHRASES,
            "length_level": LENGTH_LEVEL}


def _template():
    """The page template (``templates/report.html``), autoescaping everything it is given."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("lda_monitor.audit", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    return env.get_template("report.html")


def write_report(out: Path, rows, records, run_info: dict | None = None, primary_judge: str | None = None,
                 discoveries=None) -> Path:
    """Write ``report.html`` (and the plots as PNG files) to ``out``.

    ``run_info`` is the run's identity as label -> value (run dir, checkpoints, judge spec,
    alpha schedule, prompt suite, sampling settings, seed ...); the version and the date are
    added. ``primary_judge`` limits the step chart to that judge (default: every judge).
    ``discoveries`` (:class:`~lda_monitor.core.discovery.Discovery` per evaluation) lead the page
    when any phrase was found. Without any judge (no rows) the flag-rate sections say so.
    """
    out = Path(out)
    judges = [primary_judge] if primary_judge else sorted({r.judge for r in _overall(rows)})
    figures = []
    if rows:  # no judge, no flag rates
        png = _plot_flag_rate(rows, judges)
        (out / "flag_rate_vs_step.png").write_bytes(png)
        figures.append(("Flag rate vs step", "flag-rate", png))
    if is_sweep(rows):
        sweep = _plot_sweep(rows, judges)
        (out / "flag_rate_and_coherence_vs_alpha.png").write_bytes(sweep)
        figures.append(("Flag rate and coherence vs alpha", "sweep", sweep))
    page = _template().render(
        csp=_CSP, style=_STYLE, discoveries=_discoveries(discoveries), discovery_rules=_discovery_rules(),
        discovery_head=["phrase", "direction", "amplified", "plain", "q-value", "log ratio"],
        identity=_identity(run_info or {}), failures=_failures(records),
        charts=[(title, key, base64.b64encode(data).decode()) for title, key, data in figures],
        summary=_summary(rows) if rows else None, top_flagged=TOP_FLAGGED, flagged=_flagged(records),
        unflagged_samples=UNFLAGGED_SAMPLES, unflagged=_unflagged(records))
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
