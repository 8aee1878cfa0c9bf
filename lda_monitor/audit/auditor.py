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

from ..core.discovery import discover_records, phrase_line
from ..core.evaluation import choose_alpha, evaluate_chunks, evaluation_chunks
from ..core.progress import RolloutProgress
from ..core.prompts import load_prompts
from ..core.records import RECORDS_FILE, RecordWriter, read_records, rewrite_records
from ..core.schedules import ConstantSchedule, parse_schedule
from ..engine.distributed import Ranks, rank_device
from ..engine.dtypes import AUTO, dtype_name, model_dtype_name, resolve_dtype
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
from .checkpoints import Checkpoint, NoCheckpointsFound, discover, recorded_compute_dtype
from .config import AuditConfig
from .outputs import write_outputs
from .report import sampling_info

AUDIT_ADAPTER = "lda_audit"
REFERENCE_ADAPTER = "lda_audit_reference"


def _weights_identity(path: Path) -> list:
    return sorted((p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in path.iterdir()
                  if p.suffix in (".safetensors", ".bin", ".json"))


def unit_key(checkpoint: Checkpoint, alpha: float, config: AuditConfig, items, judge_name: str) -> str:
    """Hash of what determines a unit's result (paths, weights' identity, measurement, prompts)."""
    content = {
        "checkpoint": str(checkpoint.path.resolve()), "weights": _weights_identity(checkpoint.path),
        "alpha": alpha, "reference": config.reference, "base_model": config.base_model,
        "prompts": [[i.id, i.prompt, i.category] for i in items], "judge_name": judge_name,
        "dtype": config.dtype, **config.fingerprint(),
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


class _Models:
    """Loads what each checkpoint needs, reusing the base for adapter checkpoints."""

    def __init__(self, config: AuditConfig, checkpoints: list[Checkpoint], reference_dtype: str | None = None):
        self.s, self.first = config, checkpoints[0]
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
            return adapter_base(checkpoint.path, self.s.base_model)
        if self.s.base_model is None:
            raise UserInputError(self._NO_BASE)
        return resolve_model_dir(self.s.base_model)

    def pair(self, checkpoint: Checkpoint):
        if checkpoint.kind == "adapter":
            return self._adapter_pair(checkpoint)
        after, tokenizer = load_model(checkpoint.path, **self.options)
        if self.reference_model is None:
            kind = self.s.reference_kind
            spec = self._base_dir(checkpoint) if kind == "base" else (
                self.first.path if kind == "first" else self.s.reference)
            self.reference_model, ref_tokenizer = load_model(spec, **self.reference_options)
            self.reference_tokenizer = ref_tokenizer
        return TwoModelPair(after, self.reference_model, tokenizer, self.reference_tokenizer)

    def _adapter_pair(self, checkpoint: Checkpoint):
        """Swap the checkpoint's adapter in place on the one loaded base model."""
        from peft import PeftModel

        name = f"{AUDIT_ADAPTER}_{checkpoint.step}"
        if self.peft is None:
            base_dir = self._base_dir(checkpoint)
            base = load_causal_lm(base_dir, **self.options)
            self.peft = PeftModel.from_pretrained(base, str(checkpoint.path), adapter_name=name)
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


def audit_dtype(config: AuditConfig, checkpoints: list[Checkpoint], echo) -> tuple[str, str | None]:
    """The dtype to compute in, and the reference's when the monitor held it in another one.

    The dtype is part of the measurement: the monitor records the one it computed in with its state
    in every checkpoint, and an audit without ``dtype`` uses it, so it reproduces the monitor's
    rollouts on any machine (``auto`` would pick bfloat16 on bf16 hardware for a float32 run). A
    ``dtype`` that differs from the recorded one is honoured and said once."""
    recorded = {json.dumps(d, sort_keys=True): d for c in checkpoints if (d := recorded_compute_dtype(c.path))}
    if len(recorded) > 1:
        echo(f"note: the monitor computed in different dtypes across these checkpoints ({', '.join(recorded)}); "
             "set --dtype to choose one")
    record = next(iter(recorded.values())) if len(recorded) == 1 else None
    if config.dtype is None:
        if record is None:
            return AUTO, None
        policy, reference = record.get("policy"), record.get("reference")
        echo(f"computing in {policy} as the monitor did at these checkpoints (recorded in trainer_state.json; "
             "--dtype overrides)")
        return policy, reference if reference != policy else None
    if record is not None:
        chosen = resolve_dtype(config.dtype, config.device, announce=False)
        if chosen is not None and dtype_name(chosen) != record.get("policy"):
            echo(f"note: the monitor computed in {record.get('policy')} at these checkpoints; auditing in "
                 f"{dtype_name(chosen)} as --dtype asks, so rollouts will differ from the monitor's records "
                 "(leave --dtype out to reproduce them)")
    return config.dtype, None


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
    dtype, reference_dtype = audit_dtype(config, checkpoints, echo)
    config = replace(config, dtype=dtype)
    models = _Models(replace(config, device=rank_device(config.device)), checkpoints, reference_dtype)
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
            keys = {a: unit_key(checkpoint, a, config, items, judge.name) for a in alphas}
            if all(k in done for k in keys.values()):
                echo(f"step {checkpoint.step}: already audited, skipped")
                continue
            pair = pair or models.pair(checkpoint)
            compute_dtype = pair_dtypes(pair)
            for alpha, key in keys.items():
                if key not in done:
                    run.unit(pair, checkpoint, alpha, key, f"checkpoint {number}/{len(checkpoints)}", compute_dtype)
    if sink is not None:
        sink.finish()
    if not ranks.is_main:
        return ranks.broadcast(None)
    rows = write_outputs(out, list(read_records(records_path)), run_info=_run_info(paths, config, checkpoints, judge),
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

    def unit(self, pair, checkpoint: Checkpoint, alpha: float, key: str, where: str, compute_dtype: dict) -> None:
        start = time.perf_counter()
        # The prompts' chunks, then the stratified estimate's rounds (numbered on after them).
        skip = self.done.finished_chunks(key, len(self.chunks) + self.config.estimate_rounds(len(self.items)))
        prior = self._unit_records(key) if skip else []
        per_prompt = self.config.rollouts_per_prompt(alpha)
        progress = RolloutProgress(
            len(self.items) * per_prompt, f"{where} (step {checkpoint.step}), alpha {alpha:g}",
            done=sum(len(self.chunks[i]) * per_prompt for i in skip), enabled=self.ranks.is_main)
        unit = None
        for index, part in evaluate_chunks(
            pair, self.items, self.judge, alpha=alpha, measurement=self.config, step=checkpoint.step,
            run_id=f"audit-{key[:6]}", source="audit", checkpoint=str(checkpoint.path), skip=skip, ranks=self.ranks,
            prior=prior,
        ):
            chunk_key = f"{key}:{index}"
            for record in part.records:
                record.extra["audit_key"] = chunk_key
                record.compute_dtype = compute_dtype
            if self.writer is not None:
                self.writer.write(part.records)
            self.done.mark(chunk_key, checkpoint, alpha)
            unit = part if unit is None else unit.extend(part)
            progress.update(len(self.chunks[index]) * per_prompt if index < len(self.chunks) else 0)
        progress.close()
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


def pair_dtypes(pair) -> dict:
    """What a record says it was computed in (the callback's ``Reference.compute_dtype`` shape)."""
    policy = model_dtype_name(pair.models[0])
    return {"policy": policy, "reference": model_dtype_name(pair.models[1]) if len(pair.models) > 1 else policy}


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
