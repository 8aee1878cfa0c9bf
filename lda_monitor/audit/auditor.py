"""``audit-checkpoints``: the callback's measurement, offline, over saved checkpoints.

The same :class:`~lda_monitor.core.measurement.Measurement` (one YAML file serves both), the same
alpha (the schedule over the run's ``max_steps`` from ``trainer_state.json``, or an adaptive
schedule's probe), and the same chunked evaluator as the callback
(:func:`lda_monitor.core.evaluation.evaluate_chunks`): at a checkpoint the callback also evaluated,
the audit's rollouts are the callback's, token for token.

Each (checkpoint, alpha) unit runs in chunks of about one batch of rollouts; a chunk's records
are written when it finishes, then its key (a hash of everything that determines the unit's
result, plus the chunk index) is appended to ``done.jsonl``. A rerun with the same ``out``
skips finished chunks and units and drops records of a chunk interrupted between the two
writes: nothing is duplicated and at most the batch in flight is lost.
"""

from __future__ import annotations

import gc
import hashlib
import json
import time
from contextlib import nullcontext
from dataclasses import fields, replace
from pathlib import Path

from ..config.audit import AUTOCAST_OFF, AuditConfig
from ..core.discovery import discover_records, phrase_line
from ..core.evaluation import choose_alpha, evaluate_chunks, evaluation_chunks
from ..core.progress import EvaluationProgress
from ..core.prompts import load_prompts
from ..core.records import RECORDS_FILE, RecordWriter, read_records, rewrite_records
from ..core.schedules import ConstantSchedule, parse_schedule
from ..engine.autocast import SIDES, autocast_forward, observed_autocast, pair_compute_dtype
from ..engine.distributed import Ranks, rank_device
from ..engine.dtypes import AUTO, dtype_name, resolve_dtype
from ..engine.models import (
    adapter_base,
    load_causal_lm,
    load_model,
    load_tokenizer,
    resolve_model_dir,
)
from ..engine.pairs import PeftPair, TwoModelPair
from ..errors import UserInputError
from ..judges.describe import describe_judge
from ..judges.health import warn_judge_failures
from ..judges.none import NO_JUDGE_NOTE, has_judge, judge_or_none
from ..sinks.wandb_sink import WandbSink
from .checkpoints import Checkpoint, NoCheckpointsFound, discover, recorded_compute_dtype, recorded_size_budget
from .outputs import write_outputs
from .report import sampling_info

AUDIT_ADAPTER = "lda_audit"
REFERENCE_ADAPTER = "lda_audit_reference"


def _weights_identity(path: Path) -> list:
    return sorted((p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in path.iterdir()
                  if p.suffix in (".safetensors", ".bin", ".json"))


def unit_key(checkpoint: Checkpoint, alpha: float, config: AuditConfig, items, judge_name: str,
             autocast: dict | None = None) -> str:
    """Hash of what determines a unit's result (paths, weights' identity, measurement, prompts, the
    dtype and any autocast; without autocast the hash is the one earlier versions wrote, so their
    audits resume)."""
    content = {
        "checkpoint": str(checkpoint.path.resolve()), "weights": _weights_identity(checkpoint.path),
        "alpha": alpha, "reference": config.reference, "base_model": config.base_model,
        "prompts": [[i.id, i.prompt, i.category] for i in items], "judge_name": judge_name,
        "dtype": config.dtype, **config.fingerprint(), **({"autocast": autocast} if autocast else {}),
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


class _Models:
    """Loads what each checkpoint needs, reusing the base for adapter checkpoints."""

    def __init__(self, config: AuditConfig, checkpoints: list[Checkpoint], reference_dtype: str | None = None,
                 autocast: dict | None = None):
        self.s, self.first = config, checkpoints[0]
        self.autocast = autocast or {}  # {side: dtype}: the forward wrapper a mixed-precision run had
        self.options = dict(device=config.device, dtype=config.dtype, allow_pickle=config.allow_pickle,
                            trust_remote_code=config.trust_remote_code)
        # A separate reference (full checkpoints) is loaded in the dtype the monitor held it in.
        self.reference_options = {**self.options, "dtype": reference_dtype or config.dtype}
        self.peft = None
        self.reference_model = None
        if config.reference_kind == "base" and config.base_model is None and any(c.kind == "full" for c in checkpoints):
            raise UserInputError(self._NO_BASE)  # before any model is loaded

    _NO_BASE = ("--reference base with full checkpoints needs --base-model PATH (the model training started from), "
                "or --reference first / PATH")

    def _base_dir(self, checkpoint: Checkpoint) -> Path:
        if checkpoint.kind == "adapter":
            return adapter_base(checkpoint.path, self.s.base_model, trust_remote_code=self.s.trust_remote_code)
        if self.s.base_model is None:
            raise UserInputError(self._NO_BASE)
        return resolve_model_dir(self.s.base_model)

    def pair(self, checkpoint: Checkpoint):
        if checkpoint.kind == "adapter":
            return self._adapter_pair(checkpoint)
        after, tokenizer = load_model(checkpoint.path, **self.options)
        self._mixed_precision(after, "policy")
        if self.reference_model is None:
            kind = self.s.reference_kind
            spec = self._base_dir(checkpoint) if kind == "base" else (
                self.first.path if kind == "first" else self.s.reference)
            self.reference_model, ref_tokenizer = load_model(spec, **self.reference_options)
            self.reference_tokenizer = ref_tokenizer
            self._mixed_precision(self.reference_model, "reference")
        return TwoModelPair(after, self.reference_model, tokenizer, self.reference_tokenizer)

    def _mixed_precision(self, model, side: str) -> None:
        if self.autocast.get(side):
            autocast_forward(model, self.autocast[side])

    def _adapter_pair(self, checkpoint: Checkpoint):
        """Swap the checkpoint's adapter in place on the one loaded base model."""
        from peft import PeftModel

        name = f"{AUDIT_ADAPTER}_{checkpoint.step}"
        if self.peft is None:
            base_dir = self._base_dir(checkpoint)
            base = load_causal_lm(base_dir, **self.options)
            self.peft = PeftModel.from_pretrained(base, str(checkpoint.path), adapter_name=name)
            self._mixed_precision(self.peft, "policy")  # one model computes both sides of a PEFT pair
            has_tok = (checkpoint.path / "tokenizer_config.json").is_file()
            self.tokenizer = load_tokenizer(checkpoint.path if has_tok else base_dir)
            if self.s.reference_kind != "base":
                ref_path = self.first.path if self.s.reference_kind == "first" else resolve_model_dir(self.s.reference)
                self.peft.load_adapter(str(ref_path), adapter_name=REFERENCE_ADAPTER)
        else:
            previous = self.peft.active_adapter
            self.peft.load_adapter(str(checkpoint.path), adapter_name=name)
            self.peft.set_adapter(name)
            self.peft.delete_adapter(previous)
        self.peft.set_adapter(name)
        before = None if self.s.reference_kind == "base" else REFERENCE_ADAPTER
        return PeftPair(self.peft.eval(), self.tokenizer, before_adapter=before)


def _recorded(checkpoints: list[Checkpoint], echo) -> dict | None:
    """The one ``compute_dtype`` the monitor recorded at these checkpoints, or None (none recorded,
    or several, which is said)."""
    recorded = {json.dumps(d, sort_keys=True): d for c in checkpoints if (d := recorded_compute_dtype(c.path))}
    if len(recorded) > 1:
        echo(f"note: the monitor computed in different dtypes across these checkpoints ({', '.join(recorded)}); "
             "set --dtype and --autocast to choose one")
    return next(iter(recorded.values())) if len(recorded) == 1 else None


def _autocast_words(autocast: dict | None) -> str:
    return f" under {autocast.get('policy') or autocast.get('reference')} autocast" if autocast else ""


def audit_dtype(config: AuditConfig, checkpoints: list[Checkpoint], echo) -> tuple[str, str | None, dict | None]:
    """The dtype to compute in, the reference's when the monitor held it in another one, and the
    autocast to wrap each side's forward in (``{side: dtype}``, None for none).

    The dtype and the mixed precision are part of the measurement: the monitor records what it
    computed in with its state in every checkpoint, and an audit without ``dtype`` (``autocast``)
    uses it, so it reproduces the monitor's rollouts on any machine (``auto`` would pick bfloat16 on
    bf16 hardware for a float32 run; a ``bf16=True`` Trainer computed under autocast). A setting
    that differs from the recorded one is honoured and said once, before the audit starts."""
    record = _recorded(checkpoints, echo)
    recorded_autocast = (record or {}).get("autocast")
    autocast = _chosen_autocast(config, recorded_autocast, echo)
    if config.dtype is None:
        if record is None:
            return AUTO, None, autocast
        policy, reference = record.get("policy"), record.get("reference")
        echo(f"computing in {policy}{_autocast_words(autocast)} as the monitor did at these checkpoints "
             "(recorded in trainer_state.json; --dtype and --autocast override)")
        return policy, reference if reference != policy else None, autocast
    if record is not None:
        chosen = resolve_dtype(config.dtype, config.device, announce=False)
        if chosen is not None and dtype_name(chosen) != record.get("policy"):
            echo(f"note: the monitor computed in {record.get('policy')} at these checkpoints; auditing in "
                 f"{dtype_name(chosen)} as --dtype asks, so rollouts will differ from the monitor's records "
                 "(leave --dtype out to reproduce them)")
    return config.dtype, None, autocast


def _chosen_autocast(config: AuditConfig, recorded: dict | None, echo) -> dict | None:
    """``autocast`` left out: the recorded one; ``off``: none; a dtype: that one on both sides.
    One that differs from the record is said: the rollouts then differ from the monitor's."""
    if config.autocast is None:
        return recorded
    chosen = None if config.autocast == AUTOCAST_OFF else {side: config.autocast for side in SIDES}
    if recorded != chosen and recorded is not None:
        echo(f"note: the monitor computed{_autocast_words(recorded)} at these checkpoints; auditing "
             f"{_autocast_words(chosen).strip() or 'without autocast'} as --autocast asks, so rollouts will "
             "differ from the monitor's records (leave --autocast out to reproduce them)")
    return chosen


def run_horizon(config: AuditConfig, checkpoints: list[Checkpoint]) -> tuple[int | None, str]:
    """The step count the alpha schedule spans: the config's ``alpha_horizon``, else the run's
    ``max_steps`` as the checkpoints' ``trainer_state.json`` records it - never the largest
    checkpoint found, which would change alpha whenever a subset of checkpoints is audited."""
    if config.alpha_horizon is not None:
        return config.horizon(None)
    recorded = set()
    for checkpoint in checkpoints:
        state = checkpoint.path / "trainer_state.json"
        if state.is_file():
            max_steps = json.loads(state.read_text()).get("max_steps")
            if max_steps:
                recorded.add(int(max_steps))
    if len(recorded) > 1:
        raise UserInputError(f"the checkpoints record different max_steps {sorted(recorded)}; they come from "
                             "different runs - audit one run at a time, or set alpha_horizon")
    if recorded:
        return recorded.pop(), "max_steps in the checkpoints' trainer_state.json"
    return config.horizon(None)


def audit_checkpoints(paths, config: AuditConfig, *, echo=print) -> list:
    """Audit every discovered checkpoint; returns the summary rows (also written to ``out``).

    If the audit fails having created ``out`` and written nothing worth keeping, the directory
    is removed again, so a mistake leaves no empty output behind (a directory that existed
    before, or holds finished work a rerun would resume from, is left alone)."""
    out = Path(config.out)
    created = not out.exists()
    try:
        return _audit(paths, config, out, echo)
    except BaseException:
        if created:
            _remove_if_empty(out)
        raise


def _remove_if_empty(out: Path) -> None:
    """Remove ``out`` when it holds nothing but the empty files an audit opens at its start."""
    if not out.is_dir():
        return
    entries = list(out.iterdir())
    if all(p.is_file() and p.stat().st_size == 0 for p in entries):
        for p in entries:
            p.unlink()
        out.rmdir()


def _audit(paths, config: AuditConfig, out: Path, echo) -> list:
    ranks = Ranks.current()
    if not ranks.is_main:
        echo = _silent
    out.mkdir(parents=True, exist_ok=True)
    # Rank 0's view of the directories, so every rank audits the same list (or fails alike).
    checkpoints, notes = ranks.gather_or_raise(lambda: discover(paths) if ranks.is_main else None)[0]
    for note in notes:
        echo(f"note: {note}")
    items = load_prompts(config.prompts, column=config.prompt_column, category_column=config.category_column)
    judge = judge_or_none(config.judge)
    if not has_judge(judge):
        echo(NO_JUDGE_NOTE)
    schedule = parse_schedule(config.alpha) if config.alphas is None else None
    horizon = None
    if schedule is not None:
        horizon, origin = run_horizon(config, checkpoints)
        if not isinstance(schedule, ConstantSchedule):
            echo(f"alpha schedule {config.alpha!r} spans {horizon} steps ({origin})")
    records_path = out / RECORDS_FILE
    done = DoneLedger.load(out / DONE_FILE, ranks)
    if ranks.is_main:  # records of a chunk interrupted between its two writes
        rewrite_records(records_path, lambda r: r.extra.get("audit_key") in done)
    dtype, reference_dtype, autocast = audit_dtype(config, checkpoints, echo)
    size_note = _size_budget_note(checkpoints)
    if size_note:
        echo(f"note: {size_note}")
    config = replace(config, dtype=dtype)
    models = _Models(replace(config, device=rank_device(config.device)), checkpoints, reference_dtype, autocast)
    sink = None
    if config.wandb_project and ranks.is_main:
        sink = WandbSink.start(config.wandb_project, out, {**_run_config(config), "judge": describe_judge(judge)},
                               job_type="audit")
    # Rank 0 alone writes; every rank samples its share of each chunk and gets all records back.
    with RecordWriter(records_path) if ranks.is_main else nullcontext() as writer:
        run = _UnitRunner(config, items, judge, ranks, done, writer, sink, records_path, echo)
        for number, checkpoint in enumerate(checkpoints, start=1):
            pair = None  # free the previous full checkpoint before loading the next
            gc.collect()
            if schedule is not None and schedule.is_adaptive:  # alpha comes from a probe of this pair
                pair = models.pair(checkpoint)
            if schedule is not None:
                alphas = (choose_alpha(schedule, pair, items, config, step=checkpoint.step, horizon=horizon,
                                       ranks=ranks),)
            else:
                alphas = config.alphas
            keys = {a: unit_key(checkpoint, a, config, items, judge.name, autocast) for a in alphas}
            if all(k in done for k in keys.values()):
                echo(f"step {checkpoint.step}: already audited, skipped")
                continue
            pair = pair or models.pair(checkpoint)
            for alpha, key in keys.items():
                if key not in done:
                    run.unit(pair, checkpoint, alpha, key, f"checkpoint {number}/{len(checkpoints)}")
    if sink is not None:
        sink.finish()
    if not ranks.is_main:
        return ranks.broadcast(None)
    info = {**_run_info(paths, config, checkpoints, judge), "mixed precision": _mixed_precision_info(
        autocast, (_recorded(checkpoints, _silent) or {}).get("autocast"))}
    if size_note:
        info["evaluation size"] = size_note
    rows = write_outputs(out, list(read_records(records_path)), run_info=info,
                         primary_judge=judge.name if has_judge(judge) else None)
    return ranks.broadcast(rows)


DONE_FILE = "done.jsonl"


class DoneLedger:
    """``done.jsonl``: the keys of finished units and chunks (``KEY:INDEX``), one JSON line each.
    Every rank holds rank 0's set; only rank 0 appends to the file."""

    def __init__(self, path: Path, keys: set[str], write: bool):
        self.path, self.keys, self.write = path, keys, write

    @classmethod
    def load(cls, path: Path, ranks: Ranks) -> DoneLedger:
        keys = {json.loads(line)["key"] for line in path.read_text().splitlines()} if path.is_file() else set()
        return cls(path, ranks.broadcast(keys), write=ranks.is_main)

    def __contains__(self, key: str) -> bool:
        return key in self.keys

    def finished_chunks(self, key: str, chunks: int) -> set[int]:
        return {i for i in range(chunks) if f"{key}:{i}" in self.keys}

    def mark(self, key: str, checkpoint: Checkpoint, alpha: float) -> None:
        if self.write:
            with open(self.path, "a") as f:
                f.write(json.dumps({"key": key, "checkpoint": str(checkpoint.path), "alpha": alpha}) + "\n")
        self.keys.add(key)


class _UnitRunner:
    """Runs one (checkpoint, alpha) unit chunk by chunk: writes each chunk's records, then marks
    it done, so an interrupted unit resumes after its last finished chunk."""

    def __init__(self, config: AuditConfig, items, judge, ranks: Ranks, done: DoneLedger, writer, sink,
                 records_path: Path, echo):
        self.config, self.items, self.judge, self.ranks = config, items, judge, ranks
        self.done, self.writer, self.sink, self.records_path, self.echo = done, writer, sink, records_path, echo
        self.chunks = evaluation_chunks(len(items), config)

    def _unit_records(self, key: str) -> list:
        """The records of unit ``key`` already on disk (a resumed unit's finished chunks)."""
        if not self.records_path.is_file():
            return []
        return [r for r in read_records(self.records_path) if r.extra.get("audit_key", "").startswith(key)]

    def unit(self, pair, checkpoint: Checkpoint, alpha: float, key: str, where: str) -> None:
        start = time.perf_counter()
        # The prompts' chunks, then the stratified estimate's rounds and discovery's confirmation round (numbered on).
        skip = self.done.finished_chunks(key, len(self.chunks) + self.config.estimate_rounds(len(self.items)) + 1)
        prior = self._unit_records(key) if skip else []
        progress = EvaluationProgress(f"{where} (step {checkpoint.step}), alpha {alpha:g}",
                                      enabled=self.ranks.is_main)
        unit = None
        with observed_autocast(pair) as autocast:  # what the records say is what was observed, as in the callback
            for index, part in evaluate_chunks(
                pair, self.items, self.judge, alpha=alpha, measurement=self.config, step=checkpoint.step,
                run_id=f"audit-{key[:6]}", source="audit", checkpoint=str(checkpoint.path), skip=skip,
                ranks=self.ranks, progress=progress, prior=prior,
            ):
                self._write(part, f"{key}:{index}", pair_compute_dtype(pair, autocast), checkpoint, alpha)
                unit = part if unit is None else unit.extend(part)
        if self.ranks.is_main and unit is not None:
            warn_judge_failures(unit.judge_failures(), f"step {checkpoint.step}, alpha {alpha:g}")
        self.done.mark(key, checkpoint, alpha)
        new = len(unit.records) if unit is not None else 0
        found = None
        if unit is not None and self.ranks.is_main:
            if skip:  # resumed mid-unit: the chunks finished before come from disk
                unit.records = self._unit_records(key)
            found = next(iter(discover_records(unit.records)), None)
        if self.sink is not None and unit is not None:
            self.sink.log(checkpoint.step, unit.metrics(), unit, discovery=found)
        top = f"; top over-produced: {phrase_line(found.over()[0])}" if found and found.over() else ""
        self.echo(f"step {checkpoint.step}, alpha {alpha:g}: {new} new rollouts in "
                  f"{time.perf_counter() - start:.1f} s{top}")

    def _write(self, part, chunk_key: str, compute_dtype: dict, checkpoint: Checkpoint, alpha: float) -> None:
        """Write a finished chunk's records, then mark it done (the order a resume relies on)."""
        for record in part.records:
            record.extra["audit_key"] = chunk_key
            record.compute_dtype = compute_dtype
        if self.writer is not None:
            self.writer.write(part.records)
        self.done.mark(chunk_key, checkpoint, alpha)


def _run_config(config: AuditConfig) -> dict:
    return {f.name: str(getattr(config, f.name)) for f in fields(config)}


def _reference_used(config: AuditConfig, checkpoints) -> str:
    """What ``reference`` stood for in this audit: "auto" or "base" alone does not say which model."""
    kind = config.reference_kind
    if kind == "path":
        return config.reference
    first = checkpoints[0]
    if kind == "first":
        return f"{config.reference}: the first checkpoint, {first.path}"
    disabled = " (adapters disabled)" if first.kind == "adapter" else ""
    return f"{config.reference}: the base model {_Models(config, checkpoints)._base_dir(first)}{disabled}"


def _run_info(paths, config: AuditConfig, checkpoints, judge) -> dict:
    """The audit's identity for the report: enough to rerun it and to read its numbers."""
    prompts = config.prompts if isinstance(config.prompts, str | Path) else f"{len(config.prompts)} inline prompts"
    return {
        "command": "lda-monitor audit-checkpoints",
        "run dirs": [str(p) for p in paths],
        "checkpoints": [f"step {c.step}: {c.path} ({c.kind})" for c in checkpoints],
        "reference": _reference_used(config, checkpoints),
        "judge spec": json.dumps(config.judge, default=str) if not isinstance(config.judge, str) else config.judge,
        "judge": describe_judge(judge),
        "alpha": f"sweep {', '.join(f'{a:g}' for a in config.alphas)}" if config.alphas
        else f"schedule {config.alpha}",
        "prompt suite": str(prompts),
        "sampling": sampling_info(config),
        "compute dtype": _dtype_info(config),
        "seed": config.seed,
        "output": str(config.out),
    }


def _size_budget_note(checkpoints: list[Checkpoint]) -> str | None:
    """Said before the audit starts and in its report when the monitor adapted its evaluations to a
    time budget: the audit samples the configured size, so where the callback cut an evaluation the
    rollouts differ from its records (each of which names the size it had, ``extra.evaluation_size``)."""
    fractions = {f for c in checkpoints if (f := recorded_size_budget(c.path)) is not None}
    if not fractions:
        return None
    return (f"the monitor ran with max_monitor_fraction={', '.join(f'{f:g}' for f in sorted(fractions))}, so it "
            "may have sampled smaller evaluations than configured; this audit samples the configured size, so at "
            "steps where the callback cut one (its records' extra.evaluation_size) the rollouts differ from its "
            "records; give those sizes (prompts, samples_per_prompt, max_new_tokens) to reproduce them")


def _mixed_precision_info(used: dict | None, recorded: dict | None) -> str:
    """The summary's word on autocast: what the audit computed under, and loudly when it is not what
    the monitor recorded (its rollouts then are not the monitor's)."""
    words = _autocast_words(used).strip() or "none (no autocast)"
    if used == recorded:
        return f"{words}, as the monitor recorded" if recorded else words
    monitor = _autocast_words(recorded).strip() or "without autocast"
    return f"{words}; NOT as the monitor computed ({monitor}): these rollouts differ from its records"


def _dtype_info(config: AuditConfig) -> str:
    resolved = resolve_dtype(config.dtype, config.device, announce=False)
    stored = "as stored in the checkpoints"
    if config.dtype == AUTO:
        return f"auto: {dtype_name(resolved)}"
    return dtype_name(resolved) if resolved is not None else stored


def _silent(_message: str) -> None:
    """The echo of ranks other than 0: one rank speaks for the job."""


def watch_checkpoints(paths, config: AuditConfig, *, until_step: int | None = None, poll_seconds: float = 30.0,
                      echo=print, sleep=time.sleep) -> list:
    """Audit checkpoints as a training job writes them (resume makes each pass cheap), until a
    checkpoint at ``until_step`` or later is audited, or Ctrl-C; returns the last summary."""
    rows: list = []
    if not Ranks.current().is_main:
        echo = _silent
    try:
        while True:
            try:
                rows = audit_checkpoints(paths, config, echo=echo)
            except NoCheckpointsFound:
                echo("waiting for the first checkpoint ...")
            steps = [r.step for r in rows]
            if until_step is not None and steps and max(steps) >= until_step:
                return rows
            sleep(poll_seconds)
    except KeyboardInterrupt:
        echo("watch stopped; everything finished so far is on disk")
        return rows
