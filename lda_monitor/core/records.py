"""The rollout record: one line of JSONL per rollout, shared by the callback and the auditor.

Records are the source of truth: every metric can be recomputed from them. The schema is
versioned; a reader refuses versions it does not know instead of guessing. Verdicts are
:class:`~lda_monitor.judges.base.Verdict` objects in memory and plain objects on disk. Floats such as
-inf log-probs (a token outside the after model's top-p nucleus) are written as JSON's
non-standard ``-Infinity``, which Python's json module reads back exactly.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from ..errors import UserInputError
from ..judges.base import Verdict

SCHEMA_VERSION = 1
# Per-token proposal log-probs are rounded to this many decimals: an error of at most 5e-6 per
# token, 6.4e-4 in a 128-token log-weight, for about half the characters of a full float.
PER_TOKEN_DECIMALS = 5
KIND_AMPLIFIED = "amplified"
KIND_PLAIN = "plain"
KIND_ESTIMATE = "estimate"  # the natural-rate ladder: small alphas drawn only to estimate the rate
KIND_CONFIRM = "confirm"  # discovery's confirmation round (alpha 0: its plain side); see core.discovery


def draw_key(record) -> tuple:
    """What identifies one draw: where, which sampler, which random stream. An audit sweep samples
    the plain control once per alpha on the same streams, so its copies share one key."""
    r = record
    return r.step, r.checkpoint, r.kind, r.alpha, r.prompt_index, r.sample_index, r.seed


def distinct_draws(records) -> list:
    """The first record of each draw (:func:`draw_key`), in order: a sweep's copies of one plain
    draw counted twice would shrink the plain rate's interval as if twice as many had been seen,
    and show one rollout twice."""
    seen: set[tuple] = set()
    out = []
    for r in records:
        key = draw_key(r)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


@dataclass
class RolloutRecord:
    run_id: str
    source: str  # "callback" | "audit"
    step: int
    kind: str  # "amplified" | "plain" | "estimate" | "confirm"
    alpha: float
    seed: int
    prompt_index: int
    sample_index: int
    prompt: str | list
    rendered_prompt: str
    completion: str
    token_ids: list[int]
    stop_reason: str
    num_tokens: int
    logprob_sampled: list[float]
    logprob_after: list[float]
    logprob_before: list[float] | None
    kl_amp_after: float | None
    verdicts: dict[str, Verdict]
    checkpoint: str | None = None
    prompt_id: str | None = None
    category: str | None = None
    extra: dict = field(default_factory=dict)
    # [[alpha, sequence log-prob under the sampler at alpha], ...] for each alpha > 0 of the
    # evaluation, and the sampler's knobs: what the natural-rate estimate needs (None: not scored).
    proposal_logprobs: list[list[float]] | None = None
    sampler: dict | None = None
    # The dtypes the rollout was computed in ({"policy": "float32", "reference": "float32"}): in
    # bfloat16 the same seed gives other tokens, so a reproduction must know it (None: not recorded).
    compute_dtype: dict | None = None
    # Where verdicts were decided (lda_monitor.core.decision), for stopping-time weights: the
    # completion text each token's prefix decodes to, the decision token of each flagged verdict
    # that reports one (judge name -> token index), and the per-token log-probs under each proposal
    # ([[alpha, [log-prob per token]], ...], rounded to PER_TOKEN_DECIMALS; the sums above stay exact).
    token_ends: list[int] | None = None
    decision_tokens: dict[str, int] | None = None
    proposal_token_logprobs: list[list] | None = None
    # The sampled tokens' log-probs under the policy at the sampling temperature, without top-k /
    # top-p / min-p (``lda/coherence``); None in records written before it was recorded.
    logprob_policy: list[float] | None = None
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict:
        return asdict(self)  # Verdicts are dataclasses: asdict turns them into plain objects

    def verdict(self, judge: str) -> Verdict | None:
        return self.verdicts.get(judge)

    def flagged_by_any(self) -> bool:
        """True when some judge flagged this rollout (unscored verdicts do not count)."""
        return any(v.flagged for v in self.verdicts.values())

    @classmethod
    def from_dict(cls, data: dict, where: str = "record") -> RolloutRecord:
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(
                f"{where}: rollout schema version {version!r} is not supported (this lda-monitor "
                f"reads version {SCHEMA_VERSION}); read it with the lda-monitor version that wrote it"
            )
        names = {f.name for f in fields(cls)}
        missing = [
            f.name for f in fields(cls)
            if f.name not in data and f.default is MISSING and f.default_factory is MISSING
        ]
        if missing:
            raise ValueError(f"{where}: rollout record lacks fields {missing}")
        values = {k: v for k, v in data.items() if k in names}
        values["verdicts"] = {name: Verdict.from_dict(v) for name, v in data["verdicts"].items()}
        return cls(**values)


RECORDS_FILE = "rollouts.jsonl"  # the callback's and the audit's; each record carries its schema_version
LEGACY_RECORDS_FILE = "rollouts.v1.jsonl"  # another name of the file, renamed by records_path


def records_path(directory: str | Path) -> Path:
    """``directory/rollouts.jsonl``; a run that wrote the old ``rollouts.v1.jsonl`` (and not the
    new name) has its file renamed to the new name, so a resumed run and every reader find it."""
    directory = Path(directory)
    path, legacy = directory / RECORDS_FILE, directory / LEGACY_RECORDS_FILE
    if legacy.is_file() and not path.exists():
        legacy.rename(path)
    return path


class RecordWriter:
    """Append-only JSONL writer. Each ``write`` flushes, so a kill loses at most that batch;
    ``close`` fsyncs. Reopening an existing file appends (resume)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")  # closed in close()

    def write(self, records) -> None:
        for record in records:
            self._file.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_records(path: str | Path) -> Iterator[RolloutRecord]:
    """Read records back. A truncated *last* line (a kill mid-write) is skipped with a warning;
    a bad line anywhere else is corruption and raises, naming the line."""
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines) and not line.endswith("\n"):
                warnings.warn(f"{path}:{number}: skipping a truncated last record", stacklevel=2)
                return
            raise ValueError(f"{path}:{number}: corrupt rollout record ({exc})") from None
        yield RolloutRecord.from_dict(data, where=f"{path}:{number}")


def read_record_files(paths) -> list[RolloutRecord]:
    """Every record of the rollout files ``paths``, in order (what ``rejudge`` and ``discover``
    read); a missing file or no record at all is a user error."""
    records: list[RolloutRecord] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.is_file():
            raise UserInputError(f"{raw} is not a file; give rollout JSONL files (the callback's or the audit's)")
        records += list(read_records(path))
    if not records:
        raise UserInputError(f"no rollout records in {', '.join(map(str, paths))}")
    return records


def rewrite_records(path: str | Path, keep: Callable[[RolloutRecord], bool]) -> int:
    """Keep only the records ``keep`` accepts, and drop a truncated last line (a kill mid-write),
    which appending would turn into corruption. Rewrites through a temporary file and an atomic
    rename, and only when something goes; returns how many records were dropped."""
    path = Path(path)
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for record in read_records(path):
        if keep(record):
            kept.append(record)
        else:
            dropped += 1
    truncated = not path.read_bytes().endswith(b"\n") and path.stat().st_size > 0
    if dropped or truncated:
        tmp = path.with_suffix(path.suffix + ".tmp")
        with RecordWriter(tmp) as writer:
            writer.write(kept)
        os.replace(tmp, path)
    return dropped


def drop_records_after(path: str | Path, step: int) -> int:
    """Remove records of steps after ``step`` (a resumed run rolled them back)."""
    return rewrite_records(path, lambda record: record.step <= step)
