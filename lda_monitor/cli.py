"""``lda-monitor`` command line. Each subcommand is a thin shell over the library.

User mistakes (bad paths, incompatible tokenizers, bad numbers) end with one line on stderr and
exit code 2; an audit whose judge scored no rollout writes its files and exits with code 3;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, fields
from pathlib import Path

from .audit.config import AuditConfig
from .core.config_fields import add_field_arguments, given_fields, real_number
from .core.discovery import MIN_COUNT, Q_LEVEL
from .core.measurement import SAMPLING_FIELDS, Measurement
from .core.records import RECORDS_FILE
from .demo import estimate_bench
from .engine.dtypes import DTYPE_HELP
from .engine.presets import PRESETS
from .engine.sampling_config import PEFT_STRATEGIES, sampler_help
from .errors import UserInputError

EXIT_USER_ERROR = 2
DESCRIPTION = ("LDA monitor: amplify the difference between a model before and after training to surface rare "
               "behaviours early. Run a subcommand with --help for its options.")
EXIT_NOTHING_SCORED = 3  # the audit ran, but its judge scored no rollout
SAMPLE_FLAGS = (*SAMPLING_FIELDS, "batch_size")  # the measurement's fields that `sample` takes


def _add_model_args(parser: argparse.ArgumentParser, *, after_required: bool = True) -> None:
    parser.add_argument(
        "--after", required=after_required, default=None if after_required else "smollm2-135m-instruct",
        help="policy model: a local model dir, a PEFT adapter dir, or 'smollm2-135m-instruct'",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--before", help="reference model dir (default for an adapter: its base)")
    group.add_argument("--adapter", help="PEFT adapter dir applied on top of --after (the reference is --after alone)")
    parser.add_argument("--base-model", help="base model dir for an adapter whose config names a hub id")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    parser.add_argument("--dtype", default="auto", help=DTYPE_HELP)
    parser.add_argument("--peft-strategy", default="auto", choices=PEFT_STRATEGIES,
                        help="adapter pairs: 'doubled' (one forward over [base; adapter] rows) or 'two-pass' "
                             "(default: auto)")
    parser.add_argument("--allow-pickle", action="store_true", help="allow pickle (.bin) weights")
    parser.add_argument("--trust-remote-code", action="store_true", help="run custom model code from the dir")


def _device(name: str | None) -> str:
    import torch

    return name or ("cuda" if torch.cuda.is_available() else "cpu")


def _quiet_transformers() -> None:
    import warnings

    from transformers.utils import logging as hf_logging

    # Deprecation chatter from transformers/peft internals is noise for a command-line user.
    warnings.filterwarnings("ignore", category=FutureWarning)

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _load_pair(args):
    """The pair the model arguments of ``_add_model_args`` describe; warns about vocab sizes."""
    from .engine.models import load_pair

    pair = load_pair(
        args.after, before=args.before, adapter=args.adapter, base=args.base_model,
        device=_device(args.device), dtype=args.dtype, allow_pickle=args.allow_pickle,
        trust_remote_code=args.trust_remote_code, peft_strategy=args.peft_strategy,
    )
    if pair.compatibility.warning:
        print(f"warning: {pair.compatibility.warning}", file=sys.stderr)
    return pair


def _cmd_sample(args) -> int:
    from .core.prompts import question_text
    from .engine.sampling import sample
    from .engine.sampling_config import SamplingConfig

    prompts = list(args.prompt or [])
    if args.prompts:
        from .core.prompts import load_prompts

        prompts += [item.prompt for item in load_prompts(args.prompts)]
    if not prompts:
        raise UserInputError("no prompts: give --prompt TEXT (repeatable) or --prompts FILE")
    # the measurement's sampler flags (defaults: the one declaration in SamplingConfig)
    config = SamplingConfig.from_fields(given_fields(args, Measurement), alpha=args.alpha, greedy=args.greedy)
    pair = _load_pair(args)
    rollouts = sample(pair, prompts, config, samples_per_prompt=args.samples)
    for r in rollouts:
        if args.json:
            record = asdict(r)
            record.pop("prompt_token_ids")
            record["num_tokens"] = r.num_tokens
            print(json.dumps(record, ensure_ascii=False))
        else:
            print(f"--- prompt {r.prompt_index} sample {r.sample_index} | alpha {r.alpha:g} | "
                  f"{r.num_tokens} tokens | stop: {r.stop_reason} | KL(amp||after) {r.kl_amp_after:.3f}")
            print(f">>> {question_text(r.prompt)}")
            print(r.completion)
    return 0


def _serve_names(args) -> tuple[str, str]:
    """How responses name the two models: the specs given on the command line."""
    if args.adapter:
        return args.adapter, args.after
    if args.before:
        return args.after, args.before
    return args.after, f"{args.after} (adapters disabled)"


def _cmd_serve(args) -> int:
    try:
        import uvicorn

        from .server import Limits, create_app
    except ImportError as exc:
        raise UserInputError(f"serve needs FastAPI and uvicorn ({exc}); install them with "
                             "pip install 'lda-monitor[serve]'") from None

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {args.host}: the API has no authentication; anyone who can reach "
              "this address can run the models", file=sys.stderr)
    judge = None
    if args.judge:
        from .judges import build_judge

        judge = build_judge(args.judge)
    pair = _load_pair(args)
    model_after, model_before = _serve_names(args)
    app = create_app(
        pair, model_after=model_after, model_before=model_before, judge=judge,
        limits=Limits(max_prompt_tokens=args.max_prompt_tokens, max_prompts=args.max_prompts,
                      max_samples=args.max_samples),
        max_rows=args.max_batch_rows, batch_wait_seconds=args.batch_wait_ms / 1000, alpha=args.alpha,
        merge_reduced_precision=args.merge_reduced_precision,
    )
    print(f"serving {pair.describe()} on http://{args.host}:{args.port} (API docs at /docs)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _cmd_bench(args) -> int:
    import torch

    from .engine.bench import format_bench, run_bench
    from .engine.models import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    device = _device(args.device)
    naive_prompts = args.naive_prompts
    if args.config_preset:
        from .engine.bench import preset_model, preset_tokenizer
        from .engine.dtypes import resolve_dtype

        tokenizer = preset_tokenizer()
        after = preset_model(args.config_preset, dtype=resolve_dtype(args.dtype, device) or torch.float32,
                             device=device)
        before, naive_prompts = None, 0  # a LoRA side; the naive loop would take hours at this size
    else:
        after, tokenizer = load_model(args.after, device=device, dtype=args.dtype)
        before = load_model(args.before, device=device, dtype=args.dtype)[0] if args.before else None
    report = run_bench(
        after, tokenizer, before_model=before, batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens, alpha=args.alpha, naive_prompts=naive_prompts,
    )
    print(json.dumps(report, indent=2) if args.json else format_bench(report))
    return 0


def _cmd_demo(args) -> int:
    from .demo.run import run_demo

    run_demo(args.out, quick=args.quick, seed=args.seed, poison_share=args.poison_share,
             report_to="none" if args.no_wandb else None, judge=not args.no_judge)
    return 0


def _cmd_audit(args) -> int:

    config = args.audit_config  # built and checked by _check_audit, before the heavy imports
    from .audit.auditor import audit_checkpoints
    from .core.progress import summary_table
    from .engine.distributed import process_group_from_environment

    with process_group_from_environment() as ranks:  # under torchrun / accelerate launch
        if args.watch:
            from .audit.auditor import watch_checkpoints

            rows = watch_checkpoints(args.paths, config, until_step=args.until_step,
                                     poll_seconds=args.poll_seconds)
        else:
            rows = audit_checkpoints(args.paths, config)
    if not ranks.is_main:
        return 0
    print(summary_table(rows))
    print(f"wrote {config.out}/{RECORDS_FILE}, summary.json, summary.csv, discoveries.json, report.html")
    from .audit.outputs import nothing_scored

    failure = nothing_scored(Path(config.out))
    if failure:
        print(f"lda-monitor {args.command}: error: {failure}", file=sys.stderr)
        return EXIT_NOTHING_SCORED
    return 0


def _cmd_rejudge(args) -> int:
    judge = args.judge
    if judge is None and args.config:
        judge = AuditConfig.file_values(args.config).get("judge")
    if judge is None:
        raise UserInputError("give --judge SPEC (or a --config that has a judge)")
    from .audit.rejudge import rejudge
    from .core.progress import summary_table

    rows = rejudge(args.rollouts, judge, args.out, name=args.name)
    print(summary_table(rows))
    print(f"wrote {args.out}/{RECORDS_FILE}, summary.json, summary.csv, discoveries.json, report.html")
    return 0


def _cmd_discover(args) -> int:
    from .audit.discover import DISCOVERIES_FILE, discover_files

    discover_files(args.rollouts, args.out, q_level=args.q, min_count=args.min_count)
    print(f"wrote {args.out}/{DISCOVERIES_FILE}, report.html")
    return 0


def _check_audit(args) -> None:
    """What a user can get wrong, checked before torch and transformers load (milliseconds): the
    config (file and flags: every measurement value, the alpha schedule), the paths, the prompt
    suite and the judge spec. The audit checks again."""
    from .audit.checkpoints import discover
    from .core.prompts import load_prompts
    from .judges.registry import check_judge_spec

    values = AuditConfig.file_values(args.config) if args.config else {}
    values.update(given_fields(args, AuditConfig))
    if args.prompt:
        values["prompts"] = list(args.prompt)
    config = AuditConfig(**values)
    if args.watch:  # the run dir may still be empty, but it must exist
        for path in args.paths:
            if not Path(path).expanduser().is_dir():
                raise UserInputError(f"{path} is not a directory; give a run dir or checkpoint dirs")
    else:
        discover(args.paths)
    load_prompts(config.prompts, column=config.prompt_column, category_column=config.category_column)
    check_judge_spec(config.judge)
    args.audit_config = config


def _check_sample(args) -> None:
    """The prompt suite, checked before the models load."""
    if args.prompts:
        from .core.prompts import load_prompts

        load_prompts(args.prompts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lda-monitor", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)

    s = sub.add_parser("sample", help="sample amplified completions from a before/after pair")
    _add_model_args(s)
    s.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    s.add_argument("--prompts", help="a prompt suite file (YAML or JSONL)")
    s.add_argument("--alpha", type=real_number, required=True, help=sampler_help("alpha"))
    s.add_argument("--samples", type=int, default=1, help="samples per prompt")
    s.add_argument("--greedy", action="store_true", help=sampler_help("greedy"))
    add_field_arguments(s, Measurement, SAMPLE_FLAGS)
    s.add_argument("--json", action="store_true", help="one JSON object per rollout")
    s.set_defaults(run=_cmd_sample, check=_check_sample)

    b = sub.add_parser("bench", help="throughput of LDA vs generate vs a naive single-prompt loop")
    b.add_argument("--after", default="smollm2-135m-instruct",
                   help="policy model: a local model dir or 'smollm2-135m-instruct' (default)")
    b.add_argument("--before", help="reference model (default: a LoRA-perturbed copy of --after)")
    b.add_argument("--lora", action="store_true", help="LoRA-perturbed pair, both PEFT strategies (default)")
    b.add_argument("--batch-size", type=int, default=32, help="prompts decoded together (default: 32)")
    b.add_argument("--max-new-tokens", type=int, default=64, help="tokens decoded per prompt (default: 64)")
    b.add_argument("--alpha", type=real_number, default=1.0, help="amplification of the LDA runs (default: 1)")
    b.add_argument("--dtype", default="auto", help=DTYPE_HELP)
    b.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    b.add_argument("--naive-prompts", type=int, default=4, help="prompts timed in the naive loop")
    b.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    b.add_argument("--config-preset", choices=sorted(PRESETS), help=(
        "a randomly initialised model of this shape with a LoRA side instead of --after (no download; "
        "the embedded tokenizer; no naive loop); measure at --max-new-tokens 256"))
    b.add_argument("--json", action="store_true", help="print the measurements as JSON")
    b.set_defaults(run=_cmd_bench)
    # Benchmarks of other things are subcommands; `bench` alone stays the throughput benchmark.
    benches = b.add_subparsers(dest="bench", metavar="{estimate}")
    e = benches.add_parser("estimate", help="the natural-rate estimate against exact rates: DIR/estimate.json")
    estimate_bench.add_arguments(e)
    e.set_defaults(run=estimate_bench.run)

    d = sub.add_parser("demo", help="offline end-to-end demo: LDA catches a planted behaviour early")
    d.add_argument("--quick", action="store_true", help="the 3-minute version (CI runs it)")
    d.add_argument("--out", default="lda-demo", help="output directory")
    d.add_argument("--seed", type=int, default=0, help="seed of the training data, training and sampling "
                                                         "(default: 0)")
    d.add_argument("--poison-share", type=real_number, default=0.06, help="share of poisoned training rows")
    d.add_argument("--no-wandb", action="store_true", help="do not log to W&B (default: offline run)")
    d.add_argument("--no-judge", action="store_true", help="no judge at all: judge-free discovery alone must "
                   "name the planted phrase")
    d.set_defaults(run=_cmd_demo)

    v = sub.add_parser("serve", help="HTTP API: the reference LDA server's endpoints and an OpenAI-compatible /v1")
    _add_model_args(v)
    v.add_argument("--host", default="127.0.0.1", help="bind address (default: this machine only)")
    v.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    v.add_argument("--judge", help="judge spec; every completion then carries its verdicts")
    v.add_argument("--max-prompt-tokens", type=int, default=2048, help="longest formatted prompt accepted")
    v.add_argument("--max-prompts", type=int, default=64, help="most prompts in one batch request")
    v.add_argument("--max-samples", type=int, default=16, help="most samples per prompt in one request")
    v.add_argument("--max-batch-rows", type=int, default=64, help="most rows decoded together")
    v.add_argument("--batch-wait-ms", type=real_number, default=0.0,
                   help="wait this long for more requests before decoding (trades latency for batching)")
    v.add_argument("--alpha", type=real_number, default=1.0,
                   help="amplification of the OpenAI API's model 'lda' when a request sends no alpha")
    v.add_argument("--merge-reduced-precision", action="store_true",
                   help="in bfloat16/float16, merge seeded requests from different clients into shared batches "
                        "too (faster; a seeded completion may then depend on what it was merged with)")
    v.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn's log level (default: info)")
    v.set_defaults(run=_cmd_serve)

    a = sub.add_parser("audit-checkpoints", help="the monitor's measurement over saved checkpoints")
    a.add_argument("paths", nargs="+", help="run dirs (checkpoint-<step> inside) or checkpoint dirs")
    a.add_argument("--config", help="a YAML config; the callback's own file gives the callback's measurement "
                                    "(flags given here win)")
    a.add_argument("--prompt", action="append", metavar="TEXT", help="a prompt (repeatable; instead of --prompts)")
    sweep_or_schedule = a.add_mutually_exclusive_group()
    add_field_arguments(sweep_or_schedule, AuditConfig, ("alpha", "alphas"))
    add_field_arguments(a, AuditConfig, [f.name for f in fields(AuditConfig)
                                         if f.name not in ("alpha", "alphas", "prompt_column", "category_column")])
    a.add_argument("--watch", action="store_true", help="keep auditing new checkpoints as training writes them")
    a.add_argument("--until-step", type=int, help="with --watch: stop once this step is audited")
    a.add_argument("--poll-seconds", type=real_number, default=30.0, help="with --watch: seconds between scans")
    a.set_defaults(run=_cmd_audit, check=_check_audit)
    r = sub.add_parser("rejudge", help="score stored rollouts again with a new judge (no policy model loaded)")
    r.add_argument("rollouts", nargs="+", help="rollout JSONL files (the callback's or the audit's)")
    r.add_argument("--judge", metavar="SPEC", help="the new judge's spec (default: the --config file's judge)")
    r.add_argument("--name", help="name for the new judge's verdicts (required if its name is already in the records)")
    r.add_argument("--out", required=True, help="output directory (a rerun with the same directory resumes)")
    r.add_argument("--config", help="a YAML config whose judge to use")
    r.set_defaults(run=_cmd_rejudge)
    v = sub.add_parser("discover", help="what amplification over- and under-produces, from stored rollouts "
                       "(no model, no judge)")
    v.add_argument("rollouts", nargs="+", help="rollout JSONL files (the callback's or the audit's)")
    v.add_argument("--out", required=True, help="output directory: discoveries.json and report.html")
    v.add_argument("--q", type=real_number, default=Q_LEVEL, help="false discovery rate: keep phrases with q <= Q")
    v.add_argument("--min-count", type=int, default=MIN_COUNT,
                   help="rollouts that must contain a kept phrase on its side")
    v.set_defaults(run=_cmd_discover)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "check", None):
            args.check(args)  # bad input fails here, before the heavy imports below
        _quiet_transformers()
        code = args.run(args)
    except (UserInputError, FileNotFoundError) as exc:
        print(f"lda-monitor {args.command}: error: {exc}", file=sys.stderr)
        code = EXIT_USER_ERROR
    if argv is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        _exit_launched_rank(code)
    return code


def _exit_launched_rank(code: int) -> None:
    """End a rank started by torchrun / accelerate launch once its work is written and its
    process group destroyed, without running interpreter teardown: there, gloo's C++ threads
    occasionally abort the process ("terminate called without an active exception", SIGABRT)
    after a successful run (seen in 2 of ~6 two-process audits under load), which would turn a
    finished job into a failed one. Every output file is closed by then; stdio and logging are
    flushed here."""
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
