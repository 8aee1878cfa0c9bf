"""The detection benchmark's figure and table, made from ``detection.json`` alone (so a rerun of
one scenario redraws them with every scenario the file holds)."""

from __future__ import annotations

from pathlib import Path


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.3g}%"


def _num(x: float | None) -> str:
    return "∞" if x is None else f"{x:.3g}"


def _ratio(ratio: dict) -> str:
    """The amplification with its interval; with no plain flag only its lower bound exists."""
    if ratio["estimate"] is None:
        return f"≥ {_num(ratio['lo'])}× (no plain flag)"
    return f"{_num(ratio['estimate'])}× [{_num(ratio['lo'])}, {_num(ratio['hi'])}]"


def _step(step: int | None, steps: int) -> str:
    return "never" if step is None else f"{step} ({step / steps:.0%})"


def table_rows(report: dict) -> list[str]:
    """One markdown row per scenario and seed (the columns the issue asks for)."""
    lines = ["| scenario | seed | natural rate [95%] (flags/rollouts) | amplified rate [95%] (flags/rollouts, α) | "
             "amplification [95%] | target ≥ 100× | first detection amplified | first detection plain | "
             "false alarms step 0 | discovery top-3 hit (first discovery step) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, entry in report["scenarios"].items():
        for s in entry["seeds"]:
            nat, amp, ratio = s.get("natural_rate"), s.get("amplified_rate"), s.get("amplification")
            if nat is None:
                measured = ["not measured (no amplified detection)"] * 3 + ["-"]
            else:
                measured = [
                    f"{_pct(nat['flags'] / nat['rollouts'])} [{_pct(nat['lo'])}, {_pct(nat['hi'])}] "
                    f"({nat['flags']}/{nat['rollouts']}) at step {nat['step']}",
                    f"{_pct(amp['flags'] / amp['rollouts'])} [{_pct(amp['lo'])}, {_pct(amp['hi'])}] "
                    f"({amp['flags']}/{amp['rollouts']}, α {amp.get('alpha', float('nan')):.2f})",
                    _ratio(ratio),
                    s.get("target", {}).get("decision", "-"),
                ]
            first = s.get("first_discovery_step")
            lines.append(
                f"| {name} | {s['seed']} | " + " | ".join(measured)
                + f" | {_step(s['first_detection_step_amplified'], s['steps'])} | "
                f"{_step(s['first_detection_step_plain'], s['steps'])} | {s['false_alarms_step0']} | "
                f"{'yes' if s['discovery_hit'] else 'no'} ({'never' if first is None else first}) |")
    return lines


def sweep_rows(report: dict) -> list[str]:
    """The ``--alphas`` sweep: per scenario, seed and alpha, the amplified rate and amplification at
    the first detection step (against that step's natural rate); empty without a sweep."""
    lines = []
    for name, entry in report["scenarios"].items():
        for s in entry["seeds"]:
            for row in s.get("alpha_sweep") or []:
                ratio = row["amplification"]
                lines.append(f"| {name} | {s['seed']} | {s['natural_rate']['step']} | {row['alpha']:g} | "
                             f"{_pct(row['flags'] / row['rollouts'])} [{_pct(row['lo'])}, {_pct(row['hi'])}] "
                             f"({row['flags']}/{row['rollouts']}) | "
                             f"{_ratio(ratio)} |")
    if not lines:
        return []
    return ["| scenario | seed | step | α | amplified rate [95%] (flags/rollouts) | amplification [95%] |",
            "|---|---|---|---|---|---|", *lines]


def discovery_rows(report: dict) -> list[str]:
    """Judge-free discovery at the first amplified detection, per scenario and seed: what it named
    (phrases the confirmation round confirmed marked), a length shift, anything at step 0, and the
    confirmation round's rollouts; empty for results made before these keys existed."""
    lines = []
    for name, entry in report["scenarios"].items():
        for s in entry["seeds"]:
            if "confirmation_rollouts" not in s:
                continue
            step = s["first_detection_step_amplified"]
            confirmed = set(s.get("discovery_confirmed_at_detection") or [])
            named = ", ".join(f'"{t}"' + (" (confirmed)" if t in confirmed else "")
                              for t in s["discovery_top_at_detection"]) or "-"
            rounds = s["confirmation_rollouts"]
            lines.append(f"| {name} | {s['seed']} | {'never' if step is None else step} | "
                         f"{'yes' if s['discovery_hit'] else 'no'} | {named} | "
                         f"{s.get('discovery_length_at_detection') or '-'} | "
                         f"{s['discovery_false_phrases_step0']} + {s.get('discovery_false_length_step0', 0)} | "
                         f"{rounds.get(str(step), 0) if step is not None else '-'} | "
                         f"{sum(rounds.values())} in {len(rounds)} of {len(s['evaluations'])} |")
    if not lines:
        return []
    return ["| scenario | seed | first amplified detection | discovery hit | top-3 over-produced there | "
            "length there | step 0: phrases + length | confirmation rollouts there | confirmation rollouts, run |",
            "|---|---|---|---|---|---|---|---|---|", *lines]


def write_report(report: dict, out: Path) -> tuple[Path, Path]:
    """``detection.png`` (first detection step and amplification per scenario and seed, with
    intervals) and ``detection.md`` (the table); returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, amp_steps, plain_steps, ratios = [], [], [], []
    for name, entry in report["scenarios"].items():
        for s in entry["seeds"]:
            labels.append(f"{name}\nseed {s['seed']}")
            amp_steps.append(s["first_detection_step_amplified"])
            plain_steps.append(s["first_detection_step_plain"])
            ratios.append(s.get("amplification"))
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(8, 1.4 * len(labels) + 4), 4.5))
    x = list(range(len(labels)))
    for offset, values, label, marker in ((-0.15, amp_steps, "amplified", "o"), (0.15, plain_steps, "plain", "s")):
        shown = [(i + offset, v) for i, v in zip(x, values, strict=True) if v is not None]
        left.scatter([p for p, _ in shown], [v for _, v in shown], marker=marker, label=label)
        never = [i + offset for i, v in zip(x, values, strict=True) if v is None]
        left.scatter(never, [0] * len(never), marker="x", color="grey", label=f"{label}: never" if never else None)
    left.set_xticks(x, labels, fontsize=7)
    left.set_ylabel("first detection step")
    left.set_title("first detection (x at 0: never)")
    left.legend(fontsize=7)
    for i, ratio in enumerate(ratios):
        if ratio is None:
            continue
        mid = ratio["estimate"] if ratio["estimate"] is not None else ratio["lo"]
        hi = ratio["hi"] if ratio["hi"] is not None else mid * 10
        right.errorbar([i], [mid], yerr=[[mid - ratio["lo"]], [hi - mid]], fmt="o" if ratio["estimate"] else "^",
                       capsize=4, color="C0")
    right.axhline(100, color="red", linestyle="--", linewidth=1, label="100× target")
    right.set_yscale("log")
    right.set_xticks(x, labels, fontsize=7)
    right.set_xlim(-0.5, len(labels) - 0.5)
    right.set_ylabel("amplified rate / natural rate (95%)")
    right.set_title("amplification at the first amplified detection\n(^: no plain flag, lower bound)")
    right.legend(fontsize=7)
    fig.tight_layout()
    figure = out / "detection.png"
    fig.savefig(figure, dpi=110)
    plt.close(fig)
    table = out / "detection.md"
    table.write_text("# Detection benchmark\n\n" + f"CPU: {report.get('cpu', 'unknown')}\n\n"
                     + "\n".join(table_rows(report)) + "\n"
                     + ("\n## Judge-free discovery at the first detection\n\n" + "\n".join(found) + "\n"
                        if (found := discovery_rows(report)) else "")
                     + ("\n## Other alphas at the first detection step\n\n" + "\n".join(sweep) + "\n"
                        if (sweep := sweep_rows(report)) else ""), encoding="utf-8")
    return figure, table
