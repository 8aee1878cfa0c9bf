"""What monitoring will cost a run, and the settings that keep it within a budget.

After the first evaluation and the first training step after it, the time of one evaluation
(``E``) and of one training step (``S``) are known. A run of ``max_steps = M`` evaluated every
``N`` steps holds ``n(N) = M // N + 1`` evaluations (step 0 and every ``N``-th), plus one at the
last step when ``N`` does not divide ``M``; monitoring then takes ``n E / (n E + M S)`` of the wall
time (``E / (E + N S)`` when the run's length is unknown).

**The cost model.** An evaluation's time is taken as proportional to its *forward-rows x tokens*:
``prompts x max_new_tokens x (2 amplified + p plain + 2 ladder)`` rollouts per prompt, where an
amplified or ladder rollout runs two forwards (policy and reference) and a plain one runs one,
or two when ``natural_rate`` scores it at every alpha (``p`` = 1 or 2); the ladder is there only
when ``estimate_alphas`` asks for one (none by default). Rollouts that stop before
``max_new_tokens`` make this an upper bound; the constant is measured (the evaluation's seconds
over its units), so only the proportions are modelled. :func:`cost_shares` says which part costs
most.

**Fitting a budget** (:func:`fit_size`, used by the forecast's advice and by the callback's
``max_monitor_fraction``): the evaluation shrinks one dimension at a time, in this order, each
down to its floor before the next is touched:

1. rollouts per prompt (``samples_per_prompt``, floor :data:`MIN_SAMPLES`; the plain control and the
   ladder shrink in proportion, never below 1 when they were on),
2. prompts (the first ``k`` of the suite, floor :data:`MIN_PROMPTS`),
3. ``max_new_tokens`` (floor :data:`MIN_NEW_TOKENS`; last, because a behaviour late in an answer
   disappears from shorter ones).

The rollouts kept are the first samples of the first prompts: each has its own random stream,
so they are exactly the rollouts an unadapted evaluation draws for the same (prompt, sample),
cut at ``max_new_tokens`` once tokens are shrunk. When even the floors exceed the budget, the
floors are used and :attr:`SizePlan.fits` says so.

**The first evaluation** (step 0) comes before any training step has been timed, so no budget
exists for it yet: with ``max_monitor_fraction`` it runs at the floors (:func:`floor_size`), and
the next evaluations are fitted (and grown back up to the configured size when it fits) once the
first training step's time is known. Step 0's amplified rollouts equal plain ones (the reference
is the policy), so the floors lose no detection there.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

DEFAULT_TARGET_SHARE = 0.1
MIN_SAMPLES = 2
MIN_PROMPTS = 4
MIN_NEW_TOKENS = 32


@dataclass(frozen=True)
class EvaluationSize:
    """The knobs an evaluation's cost is adapted with."""

    prompts: int
    samples_per_prompt: int
    max_new_tokens: int

    def describe(self, full: EvaluationSize) -> str:
        """What differs from ``full``, e.g. ``samples_per_prompt 6->2, prompts 4 of 8``."""
        parts = []
        if self.samples_per_prompt != full.samples_per_prompt:
            parts.append(f"samples_per_prompt {full.samples_per_prompt}->{self.samples_per_prompt}")
        if self.prompts != full.prompts:
            parts.append(f"prompts {self.prompts} of {full.prompts}")
        if self.max_new_tokens != full.max_new_tokens:
            parts.append(f"max_new_tokens {full.max_new_tokens}->{self.max_new_tokens}")
        return ", ".join(parts) or "as configured"


def full_size(measurement, n_prompts: int) -> EvaluationSize:
    return EvaluationSize(n_prompts, measurement.samples_per_prompt, measurement.max_new_tokens)


def sized(measurement, size: EvaluationSize):
    """``measurement`` with ``size``'s rollouts and tokens (the prompts are the caller's to cut):
    the plain control and the ladder shrink in proportion to the amplified rollouts, never from
    on to off."""
    full = measurement.samples_per_prompt

    def scaled(n: int | None) -> int | None:
        return n if n is None or n == 0 else max(1, round(n * size.samples_per_prompt / full))

    return dataclasses.replace(
        measurement, samples_per_prompt=size.samples_per_prompt, max_new_tokens=size.max_new_tokens,
        plain_samples_per_prompt=scaled(measurement.plain_samples_per_prompt),
        estimate_samples_per_prompt=scaled(measurement.estimate_samples_per_prompt),
    )


def _forwards(measurement) -> dict[str, int]:
    """Forward-rows per prompt and token of each phase (see the module docstring; a ladder alpha
    equal to the evaluation's alpha, which is not sampled twice, is counted anyway)."""
    ladder = len({a for a in measurement.estimate_alphas if a != 0}) if measurement.natural_rate else 0
    return {"amplified": 2 * measurement.samples_per_prompt,
            "plain": (2 if measurement.natural_rate else 1) * measurement.plain_samples,
            "estimate": 2 * measurement.estimate_samples * ladder}


def cost_units(measurement, size: EvaluationSize) -> float:
    """The cost model's units of one evaluation of ``measurement`` at ``size``."""
    return size.prompts * size.max_new_tokens * sum(_forwards(sized(measurement, size)).values())


def cost_shares(measurement) -> dict[str, float]:
    """Each phase's share of an evaluation's cost (phases that cost nothing are left out)."""
    forwards = _forwards(measurement)
    total = sum(forwards.values())
    return {phase: n / total for phase, n in forwards.items() if n}


@dataclass(frozen=True)
class SizePlan:
    size: EvaluationSize
    units: float
    fits: bool  # False: even the floors exceed the budget


def fit_size(measurement, n_prompts: int, max_units: float) -> SizePlan:
    """The largest evaluation within ``max_units`` by the rule of the module docstring (never
    larger than configured)."""
    size = full_size(measurement, n_prompts)
    floors = {"samples_per_prompt": min(MIN_SAMPLES, size.samples_per_prompt),
              "prompts": min(MIN_PROMPTS, size.prompts),
              "max_new_tokens": min(MIN_NEW_TOKENS, size.max_new_tokens)}
    for knob, floor in floors.items():
        if cost_units(measurement, size) <= max_units:
            break
        for value in range(getattr(size, knob) - 1, floor - 1, -1):
            size = dataclasses.replace(size, **{knob: value})
            if cost_units(measurement, size) <= max_units:
                break
    units = cost_units(measurement, size)
    return SizePlan(size, units, units <= max_units)


def floor_size(measurement, n_prompts: int) -> EvaluationSize:
    """The smallest evaluation :func:`fit_size` goes down to (each knob at its floor, or as
    configured where that is smaller)."""
    return fit_size(measurement, n_prompts, 0.0).size


def evaluations_in(max_steps: int, every_n_steps: int) -> int:
    """Evaluations a run of ``max_steps`` holds: step 0, every ``every_n_steps``-th, and the last."""
    return max_steps // every_n_steps + 1 + (1 if max_steps % every_n_steps else 0)


def per_evaluation_budget(share: float, step_seconds: float, every_n_steps: int, max_steps: int | None) -> float:
    """Seconds one evaluation may take for monitoring to stay at ``share`` of the wall time."""
    if max_steps:
        return share / (1 - share) * max_steps * step_seconds / evaluations_in(max_steps, every_n_steps)
    return share / (1 - share) * every_n_steps * step_seconds


@dataclass(frozen=True)
class CostForecast:
    eval_seconds: float
    step_seconds: float
    every_n_steps: int
    max_steps: int | None
    target_share: float
    measurement: object = None  # the evaluated settings: the advice on what to sample less
    n_prompts: int = 0

    def share_at(self, every_n_steps: int) -> float:
        """Predicted fraction of the wall time spent monitoring at ``every_n_steps``."""
        if self.max_steps:
            monitoring = evaluations_in(self.max_steps, every_n_steps) * self.eval_seconds
            return monitoring / (monitoring + self.max_steps * self.step_seconds)
        return self.eval_seconds / (self.eval_seconds + every_n_steps * self.step_seconds)

    @property
    def share(self) -> float:
        return self.share_at(self.every_n_steps)

    @property
    def every_n_steps_for_target(self) -> int | None:
        """The smallest ``every_n_steps`` that keeps the share at or under the target; None when
        no ``every_n_steps`` within the run's ``max_steps`` does."""
        if not self.max_steps:
            need = self.eval_seconds * (1 - self.target_share) / (self.target_share * max(self.step_seconds, 1e-9))
            return max(1, math.ceil(need))
        return next((n for n in range(1, self.max_steps + 1) if self.share_at(n) <= self.target_share), None)

    def smaller_evaluation(self) -> SizePlan | None:
        """Settings that keep ``every_n_steps`` and reach the target (None without the measurement)."""
        if self.measurement is None:
            return None
        budget = per_evaluation_budget(self.target_share, self.step_seconds, self.every_n_steps, self.max_steps)
        per_unit = self.eval_seconds / cost_units(self.measurement, full_size(self.measurement, self.n_prompts))
        return fit_size(self.measurement, self.n_prompts, budget / per_unit)

    def message(self) -> str:
        evaluations = evaluations_in(self.max_steps, self.every_n_steps) if self.max_steps else None
        spend = (f"{evaluations} evaluations, ~{evaluations * self.eval_seconds / 60:.1f} min in all"
                 if evaluations else "per evaluation")
        line = (f"lda-monitor: one evaluation takes ~{self.eval_seconds:.1f}s and a training step "
                f"~{self.step_seconds:.2f}s; at every_n_steps={self.every_n_steps} monitoring will take "
                f"~{self.share:.0%} of the run ({spend})")
        if self.measurement is not None:
            shares = sorted(cost_shares(self.measurement).items(), key=lambda kv: -kv[1])
            line += "; of an evaluation's cost: " + ", ".join(f"{phase} rollouts ~{s:.0%}" for phase, s in shares)
        if self.share <= self.target_share:
            return line
        options = []
        every = self.every_n_steps_for_target
        if every is not None:
            options.append(f"set every_n_steps={every}")
        elif self.max_steps:
            options.append(f"no every_n_steps within max_steps={self.max_steps} does (evaluating at step 0 and "
                           f"the end alone takes ~{self.share_at(self.max_steps):.0%})")
        plan = self.smaller_evaluation()
        if plan is not None:
            full = full_size(self.measurement, self.n_prompts)
            what = plan.size.describe(full)
            if plan.fits:
                options.append(f"keep every_n_steps={self.every_n_steps} and sample less: {what}")
            else:
                options.append(f"even at the floors ({what}) an evaluation exceeds its share; "
                               "combine with a larger every_n_steps")
        adapting = getattr(self.measurement, "max_monitor_fraction", None)
        options.append(f"max_monitor_fraction={adapting:g} adapts the next evaluations" if adapting else
                       f"or set max_monitor_fraction={self.target_share:g} to adapt each evaluation to the budget")
        return line + f". For at most {self.target_share:.0%}: " + "; ".join(options)


def forecast(eval_seconds: float, step_seconds: float, every_n_steps: int, max_steps: int | None,
             warn_time_share: float | None, measurement=None, n_prompts: int = 0) -> CostForecast:
    return CostForecast(eval_seconds, step_seconds, every_n_steps, max_steps or None,
                        warn_time_share if warn_time_share else DEFAULT_TARGET_SHARE, measurement, n_prompts)
