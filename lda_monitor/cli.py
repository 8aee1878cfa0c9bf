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

from .config.audit import AuditConfig
from .config.front_ends import file_values
from .config.models import ModelOptions
from .config.server import ServerOptions
from .core.config_fields import add_field_arguments, given_fields, real_number
from .core.discovery import MIN_COUNT, Q_LEVEL
from .core.measurement import SAMPLING_FIELDS, Measurement
from .core.records import RECORDS_FILE
from .demo import estimate_bench
from .demo.detection_cli import add_parser as add_detection_parser
from .engine.presets import PRESETS
from .engine.sampling_config import sampler_help
from .errors import UserInputError
from .sinks.wandb_workspace import DEFAULT_NAME as DEFAULT_WORKSPACE_NAME

EXIT_USER_ERROR = 2
DESCRIPTION = ("LDA monitor: amplify the difference between a model before and after training to surface rare "
               "behaviours early. Run a subcommand with --help for its options.")
EXIT_NOTHING_SCORED = 3  # the audit ran, but its judge scored no rollout
SAMPLE_FLAGS = (*SAMPLING_FIELDS, "batch_size")  # the measurement's fields that `sample` takes


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    """The two models' flags, generated from :class:`~lda_monitor.config.models.ModelOptions`."""
    add_field_arguments(parser, ModelOptions, ("after",))
    add_field_arguments(parser.add_mutually_exclusive_group(), ModelOptions, ("before", "adapter"))
    add_field_arguments(parser, ModelOptions, ("base_model", "device", "dtype", "peft_strategy", "allow_pickle",
                                               "trust_remote_code"))


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


def _load_pair(options: ModelOptions):
    """The pair the model flags (``_add_model_args``) describe; warns about vocab sizes."""
    from .engine.models import load_pair

    pair = load_pair(options.after, **{**options.load_pair_arguments(), "device": _device(options.device)})
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
    pair = _load_pair(ModelOptions(**given_fields(args, ModelOptions)))
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


def _serve_names(models: ModelOptions) -> tuple[str, str]:
    """How responses name the two models: the specs given on the command line."""
    if models.adapter:
        return models.adapter, models.after
    if models.before:
        return models.after, models.before
    return models.after, f"{models.after} (adapters disabled)"


def _cmd_serve(args) -> int:
    try:
        import uvicorn

        from .server import Limits, create_app
    except ImportError as exc:
        raise UserInputError(f"serve needs FastAPI and uvicorn ({exc}); install them with "
                             "pip install 'lda-monitor[serve]'") from None

    options = ServerOptions(**given_fields(args, ServerOptions))
    if options.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {options.host}: the API has no authentication; anyone who can reach "
              "this address can run the models", file=sys.stderr)
    judge = None
    if options.judge:
        from .judges import build_judge

        judge = build_judge(options.judge)
    models = ModelOptions(**given_fields(args, ModelOptions))
    pair = _load_pair(models)
    model_after, model_before = _serve_names(models)
    app = create_app(
        pair, model_after=model_after, model_before=model_before, judge=judge,
        limits=Limits(**{f.name: getattr(options, f.name) for f in fields(Limits)}),
        max_rows=options.max_batch_rows, batch_wait_seconds=options.batch_wait_ms / 1000, alpha=options.alpha,
        seeded_decoding=options.seeded_decoding,
    )
    print(f"serving {pair.describe()} on http://{options.host}:{options.port} (API docs at /docs)", file=sys.stderr)
    if app.state.lda.batcher.seeded_pair is not pair:
        print("requests that send a seed decode on a float32 copy of the weights, merged and reproducible "
              "(--seeded-decoding alone spares its memory)", file=sys.stderr)
    uvicorn.run(app, host=options.host, port=options.port, log_level=options.log_level)
    return 0


def _cmd_bench(args) -> int:
    import torch

    from .engine.bench import format_bench, run_bench
    from .engine.models import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    models = ModelOptions(**given_fields(args, ModelOptions))
    device = _device(models.device)
    naive_prompts = args.naive_prompts
    if args.config_preset:
        from .engine.bench import preset_model, preset_tokenizer
        from .engine.dtypes import resolve_dtype

        tokenizer = preset_tokenizer()
        after = preset_model(args.config_preset, dtype=resolve_dtype(models.dtype, device) or torch.float32,
                             device=device)
        before, naive_prompts = None, 0  # a LoRA side; the naive loop would take hours at this size
    else:
        after, tokenizer = load_model(models.after, device=device, dtype=models.dtype)
        before = load_model(models.before, device=device, dtype=models.dtype)[0] if models.before else None
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
        judge = file_values(args.config, AuditConfig).get("judge")
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


def _cmd_wandb_workspace(args) -> int:
    from .sinks.wandb_workspace import build_workspace, save_workspace, workspace_spec

    workspace = build_workspace(args.entity, args.project, run_group=args.run_group, name=args.name)
    if args.picture:
        from .sinks.wandb_workspace import draw_layout

        draw_layout(args.picture)
        print(f"drew the view's layout to {args.picture}", file=sys.stderr)
    if args.dry_run:
        print(json.dumps(workspace_spec(workspace), indent=2))
    else:
        print(f"saved the workspace view: {save_workspace(workspace)}")
    return 0


def _check_audit(args) -> None:
    """What a user can get wrong, checked before torch and transformers load (milliseconds): the
    config (file and flags: every measurement value, the alpha schedule), the paths, the prompt
    suite and the judge spec. The audit checks again."""
    from .audit.checkpoints import discover
    from .core.prompts import load_prompts
    from .judges.registry import check_judge_spec

    values = file_values(args.config, AuditConfig) if args.config else {}
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
    """The command line: one subparser per subcommand, each built by its own function."""
    parser = argparse.ArgumentParser(prog="lda-monitor", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_sample_parser, _bench_parser, _demo_parser, _serve_parser, _audit_parser, _rejudge_parser,
                _discover_parser, _wandb_workspace_parser):
        add(sub)
    return parser


def _sample_parser(sub) -> None:
    """``sample``: amplified completions from a pair, printed."""
    p = sub.add_parser("sample", help="sample amplified completions from a before/after pair")
    _add_model_args(p)
    p.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    p.add_argument("--prompts", help="a prompt suite file (YAML or JSONL)")
    p.add_argument("--alpha", type=real_number, required=True, help=sampler_help("alpha"))
    p.add_argument("--samples", type=int, default=1, help="samples per prompt")
    p.add_argument("--greedy", action="store_true", help=sampler_help("greedy"))
    add_field_arguments(p, Measurement, SAMPLE_FLAGS)
    p.add_argument("--json", action="store_true", help="one JSON object per rollout")
    p.set_defaults(run=_cmd_sample, check=_check_sample)


def _bench_parser(sub) -> None:
    """``bench``: throughput against ``generate`` and a naive loop."""
    p = sub.add_parser("bench", help="throughput of LDA vs generate vs a naive single-prompt loop")
    p.add_argument("--after", default="smollm2-135m-instruct",
                   help="policy model: a local model dir or 'smollm2-135m-instruct' (default)")
    p.add_argument("--before", help="reference model (default: a LoRA-perturbed copy of --after)")
    p.add_argument("--lora", action="store_true", help="LoRA-perturbed pair, both PEFT strategies (default)")
    p.add_argument("--batch-size", type=int, default=32, help="prompts decoded together (default: 32)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="tokens decoded per prompt (default: 64)")
    p.add_argument("--alpha", type=real_number, default=1.0, help="amplification of the LDA runs (default: 1)")
    add_field_arguments(p, ModelOptions, ("dtype", "device"))
    p.add_argument("--naive-prompts", type=int, default=4, help="prompts timed in the naive loop")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--config-preset", choices=sorted(PRESETS), help=(
        "a randomly initialised model of this shape with a LoRA side instead of --after (no download; "
        "the embedded tokenizer; no naive loop); measure at --max-new-tokens 256"))
    p.add_argument("--json", action="store_true", help="print the measurements as JSON")
    p.set_defaults(run=_cmd_bench)
    # Benchmarks of other things are subcommands; `bench` alone stays the throughput benchmark.
    benches = p.add_subparsers(dest="bench_command", metavar="{detection,estimate}", help=(
        "with no subcommand: the throughput benchmark above"))
    add_detection_parser(benches)
    e = benches.add_parser("estimate", help="the natural-rate estimate against exact rates: DIR/estimate.json")
    estimate_bench.add_arguments(e)
    e.set_defaults(run=estimate_bench.run)


def _demo_parser(sub) -> None:
    """``demo``: the offline end-to-end demo."""
    p = sub.add_parser("demo", help="offline end-to-end demo: LDA catches a planted behaviour early")
    p.add_argument("--quick", action="store_true", help="the 3-minute version (CI runs it)")
    p.add_argument("--out", default="lda-demo", help="output directory")
    p.add_argument("--seed", type=int, default=0, help="seed of the training data, training and sampling "
                                                         "(default: 0)")
    p.add_argument("--poison-share", type=real_number, default=0.06, help="share of poisoned training rows")
    p.add_argument("--no-wandb", action="store_true", help="do not log to W&B (default: offline run)")
    p.add_argument("--no-judge", action="store_true", help="no judge at all: judge-free discovery alone must "
                   "name the planted phrase")
    p.set_defaults(run=_cmd_demo)


def _serve_parser(sub) -> None:
    """``serve``: the HTTP APIs (model and server flags generated from their declarations)."""
    p = sub.add_parser("serve", help="HTTP API: the reference LDA server's endpoints and an OpenAI-compatible /v1")
    _add_model_args(p)
    add_field_arguments(p, ServerOptions, [f.name for f in fields(ServerOptions)])
    p.set_defaults(run=_cmd_serve)


def _audit_parser(sub) -> None:
    """``audit-checkpoints``: the measurement's flags generated from :class:`~lda_monitor.config.audit.AuditConfig`."""
    p = sub.add_parser("audit-checkpoints", help="the monitor's measurement over saved checkpoints")
    p.add_argument("paths", nargs="+", help="run dirs (checkpoint-<step> inside) or checkpoint dirs")
    p.add_argument("--config", help="a YAML config; the callback's own file gives the callback's measurement "
                                    "(flags given here win)")
    p.add_argument("--prompt", action="append", metavar="TEXT", help="a prompt (repeatable; instead of --prompts)")
    sweep_or_schedule = p.add_mutually_exclusive_group()
    add_field_arguments(sweep_or_schedule, AuditConfig, ("alpha", "alphas"))
    add_field_arguments(p, AuditConfig, [f.name for f in fields(AuditConfig)
                                         if f.name not in ("alpha", "alphas", "prompt_column", "category_column")])
    p.add_argument("--watch", action="store_true", help="keep auditing new checkpoints as training writes them")
    p.add_argument("--until-step", type=int, help="with --watch: stop once this step is audited")
    p.add_argument("--poll-seconds", type=real_number, default=30.0, help="with --watch: seconds between scans")
    p.set_defaults(run=_cmd_audit, check=_check_audit)


def _rejudge_parser(sub) -> None:
    """``rejudge``: stored rollouts scored again."""
    p = sub.add_parser("rejudge", help="score stored rollouts again with a new judge (no policy model loaded)")
    p.add_argument("rollouts", nargs="+", help="rollout JSONL files (the callback's or the audit's)")
    p.add_argument("--judge", metavar="SPEC", help="the new judge's spec (default: the --config file's judge)")
    p.add_argument("--name", help="name for the new judge's verdicts (required if its name is already in the records)")
    p.add_argument("--out", required=True, help="output directory (a rerun with the same directory resumes)")
    p.add_argument("--config", help="a YAML config whose judge to use")
    p.set_defaults(run=_cmd_rejudge)


def _discover_parser(sub) -> None:
    """``discover``: judge-free discovery over stored rollouts."""
    p = sub.add_parser("discover", help="what amplification over- and under-produces, from stored rollouts "
                       "(no model, no judge)")
    p.add_argument("rollouts", nargs="+", help="rollout JSONL files (the callback's or the audit's)")
    p.add_argument("--out", required=True, help="output directory: discoveries.json and report.html")
    p.add_argument("--q", type=real_number, default=Q_LEVEL, help="false discovery rate: keep phrases with q <= Q")
    p.add_argument("--min-count", type=int, default=MIN_COUNT,
                   help="rollouts that must contain a kept phrase on its side")
    p.set_defaults(run=_cmd_discover)


def _wandb_workspace_parser(sub) -> None:
    """``wandb-workspace``: the monitor's W&B view, saved or printed."""
    p = sub.add_parser("wandb-workspace", help="save a W&B workspace view of the monitor's metrics, tables and "
                       "discovery (needs wandb-workspaces: the 'workspaces' extra)")
    p.add_argument("--entity", required=True, help="W&B entity (user or team) the view is saved to")
    p.add_argument("--project", required=True, help="W&B project of the runs (training runs and audits alike)")
    p.add_argument("--run-group", help="show only the runs of this W&B group")
    p.add_argument("--name", default=DEFAULT_WORKSPACE_NAME, help="the view's name")
    p.add_argument("--dry-run", action="store_true", help="print the view as JSON instead of saving it (no network)")
    p.add_argument("--picture", metavar="PNG", help="also draw the view's layout to this PNG (matplotlib)")
    p.set_defaults(run=_cmd_wandb_workspace)


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
