"""``lda-monitor rejudge``: score stored rollouts again with a new judge, without any policy model.

Re-sampling costs GPU hours; re-judging costs only the judge. The inputs are rollout records
(the callback's or the audit's); the output directory gets what an audit writes: the records with
the new verdicts added *beside* the old ones (a verdict of the same judge name is never
overwritten: name the new judge with ``name``), ``summary.json``/``summary.csv``, the plots and
``report.html``.

Records are judged in chunks; each chunk is written, then its key (a hash of the inputs, the
judge's name and full spec - patterns, rubric, model - and the chunk index) goes to
``done.jsonl``, so a rerun with the same output directory resumes where it stopped, as the audit
does. An output directory holds one rejudge: a rerun there with another judge, or another spec
under the same name, is refused (its verdicts would otherwise be kept as if they were the new
judge's). A judge that fails leaves its items unscored with the error (never "not flagged").
The new verdicts' decision tokens (where a pattern judge's flag was decided) are recomputed from
the records' ``token_ends``, so stopping-time weights serve the new judge too.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

from ..core.decision import decision_tokens
from ..core.prompts import question_text
from ..core.records import RECORDS_FILE, RecordWriter, read_record_files, read_records, rewrite_records
from ..errors import UserInputError
from ..judges import build_judge
from ..judges.spec import judge_spec, spec_digest
from .outputs import write_outputs

CHUNK = 64  # records judged and persisted together


def rejudge(paths, judge, out, *, name: str | None = None, echo=print) -> list:
    """Judge the records of ``paths`` with ``judge`` (an object or a spec) into ``out``; returns the
    summary rows. ``name`` renames the new judge (required when its name is already used)."""
    records = read_record_files(paths)
    judge = build_judge(judge)
    if name:
        judge.name = name
    existing = {n for r in records for n in r.verdicts}
    _refuse_clash({judge.name} & existing)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records_path, done_path = out / RECORDS_FILE, out / "done.jsonl"
    entries = [json.loads(line) for line in done_path.read_text().splitlines()] if done_path.is_file() else []
    identity = hashlib.sha256(json.dumps(
        [[str(Path(p).resolve()) for p in paths], len(records), judge_spec(judge), judge.name], default=str,
    ).encode()).hexdigest()[:16]
    _refuse_other_rejudge(out, entries, identity, judge)
    done = {e["key"] for e in entries}
    rewrite_records(records_path, lambda r: r.extra.get("rejudge_key") in done)
    with RecordWriter(records_path) as writer:
        for index, start in enumerate(range(0, len(records), CHUNK)):
            key = f"{identity}:{index}"
            if key in done:
                continue
            chunk = records[start : start + CHUNK]
            verdicts = judge.evaluate(
                [question_text(r.prompt) for r in chunk], [r.completion for r in chunk],
                [{"category": r.category, "prompt_id": r.prompt_id} for r in chunk],
            )
            _refuse_clash(set(verdicts) & existing)  # a composition's members too
            writer.write([_with_verdicts(r, {n: v[i] for n, v in verdicts.items()}, key) for i, r in enumerate(chunk)])
            with open(done_path, "a") as f:
                f.write(json.dumps({"key": key, "judge": judge.name, "spec": spec_digest(judge)}) + "\n")
            done.add(key)
    judged = list(read_records(records_path))
    unscored = sum(1 for r in judged if r.verdict(judge.name) and r.verdict(judge.name).flagged is None)
    echo(f"re-judged {len(records)} rollouts with {judge.name!r} ({unscored} unscored)")
    return write_outputs(out, judged)


def _with_verdicts(record, new: dict, key: str):
    """``record`` with the new judge's verdicts beside the old, and their decision tokens."""
    positions = {**(record.decision_tokens or {}), **(decision_tokens(record.token_ends, new) or {})}
    return replace(record, verdicts={**record.verdicts, **new}, decision_tokens=positions or None,
                   extra={**record.extra, "rejudge_key": key})


def _refuse_other_rejudge(out: Path, entries: list[dict], identity: str, judge) -> None:
    """An output directory resumes only the same rejudge (inputs, judge name and spec)."""
    other = next((e for e in entries if not e["key"].startswith(f"{identity}:")), None)
    if other is None:
        return
    if other.get("judge") == judge.name:
        raise UserInputError(
            f"{out} already holds verdicts of a judge named {judge.name!r} with another spec (or other inputs); "
            "resuming would keep them as if they were this judge's. Use another --out (or delete this one)")
    raise UserInputError(
        f"{out} already holds another rejudge (judge {other.get('judge', '?')!r}); give another --out")


def _refuse_clash(names: set[str]) -> None:
    if names:
        raise UserInputError(
            f"the inputs already hold verdicts of judge {', '.join(map(repr, sorted(names)))}; give the new judge "
            "another name (--name NEW) so both verdicts are kept")
