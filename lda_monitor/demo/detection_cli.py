"""``lda-monitor bench detection``'s command line (kept apart from :mod:`.detection`, whose
imports are heavy: the CLI parses and checks arguments before loading torch or transformers)."""

from __future__ import annotations

from pathlib import Path


def add_parser(bench_commands) -> None:
    """``bench detection`` (``bench_commands``: the ``bench`` group's subparsers)."""
    p = bench_commands.add_parser("detection", help="what the monitor catches, how rare it was and how early, "
                                  "per scenario and training seed")
    from .scenarios import builtin_names

    p.add_argument("--scenario", required=True, help=f"a built-in scenario ({', '.join(builtin_names())}) or a "
                   "scenario .yaml file")
    p.add_argument("--seeds", default="0,1,2", help="training seeds, comma-separated (default 0,1,2; --quick: "
                   "the first)")
    p.add_argument("--out", required=True, help="output directory: detection.json, detection.png, detection.md; "
                   "a rerun with the same directory resumes")
    p.add_argument("--quick", action="store_true", help="one seed and the scenario's reduced plain budget "
                   "(natural_rate.quick_max_rollouts): a smoke run")
    p.add_argument("--max-plain", type=int, default=None, help="plain rollouts per seed at most for the natural "
                   "rate (default: the scenario's natural_rate.max_rollouts, or quick_max_rollouts with --quick); "
                   "the sequential rule may stop sooner")
    p.add_argument("--amplified", type=int, default=None, help="amplified rollouts for the amplified rate "
                   "(default: the scenario's natural_rate.amplified_rollouts)")
    p.add_argument("--plain-seconds", type=float, default=None, help="stop the natural rate's brute force at "
                   "the first look after this many seconds (a data-independent stop; the decision is then "
                   "'undecided' unless a look decided it)")
    p.add_argument("--alphas", default="", help="also count amplified rollouts at these alphas (comma-separated) "
                   "at the first detection step, against the same natural rate: what another alpha schedule "
                   "would have measured there")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.set_defaults(run=_cmd_detection, check=_check_detection)


def _seeds(text: str) -> list[int]:
    from ..errors import UserInputError

    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserInputError(f"--seeds {text!r}: give integers separated by commas, e.g. 0,1,2") from None
    if not seeds:
        raise UserInputError("--seeds: give at least one seed, e.g. 0")
    return seeds


def _check_detection(args) -> None:
    from ..errors import UserInputError
    from .scenarios import load_scenario

    args.scenario_obj = load_scenario(args.scenario)
    for flag, value in (("--max-plain", args.max_plain), ("--amplified", args.amplified),
                        ("--plain-seconds", args.plain_seconds)):
        if value is not None and value <= 0:
            raise UserInputError(f"{flag} {value}: give a positive number")
    args.seed_list = _seeds(args.seeds)[:1] if args.quick else _seeds(args.seeds)
    try:
        args.alpha_list = tuple(float(a) for a in args.alphas.split(",") if a.strip())
    except ValueError:
        raise UserInputError(f"--alphas {args.alphas!r}: give numbers separated by commas, e.g. 4,8") from None
    if any(a <= 0 for a in args.alpha_list):
        raise UserInputError(f"--alphas {args.alphas!r}: each alpha must be positive (0 is plain sampling)")


def _cmd_detection(args) -> int:
    import sys

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from .detection import run_detection

    run_detection(args.scenario_obj, args.seed_list, Path(args.out), quick=args.quick, max_plain=args.max_plain,
                  amplified=args.amplified, plain_seconds=args.plain_seconds, alphas=args.alpha_list,
                  command="lda-monitor " + " ".join(sys.argv[1:]))
    return 0
