"""What monitoring will cost a run, said once, early, with the knob to turn.

After the first evaluation and the first training step after it, the time of one evaluation
(``E``) and of one training step (``S``) are known; at ``every_n_steps = N`` monitoring then takes
``E / (E + N * S)`` of the wall time. The callback says so once, with the ``every_n_steps`` that
would keep the share at ``warn_time_share`` (10% when that warning is off). ``max_eval_seconds``
and ``warn_time_share`` keep their own jobs: they act on measured time, this only predicts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_TARGET_SHARE = 0.1


@dataclass(frozen=True)
class CostForecast:
    eval_seconds: float
    step_seconds: float
    every_n_steps: int
    max_steps: int | None
    target_share: float

    @property
    def share(self) -> float:
        """Predicted fraction of the wall time spent monitoring."""
        return self.eval_seconds / (self.eval_seconds + self.every_n_steps * self.step_seconds)

    @property
    def every_n_steps_for_target(self) -> int:
        """The smallest ``every_n_steps`` that keeps the share at or under the target."""
        need = self.eval_seconds * (1 - self.target_share) / (self.target_share * max(self.step_seconds, 1e-9))
        return max(1, math.ceil(need))

    def message(self) -> str:
        evaluations = f"{self.max_steps // self.every_n_steps + 1} evaluations, " if self.max_steps else ""
        total = (self.max_steps // self.every_n_steps + 1) * self.eval_seconds if self.max_steps else None
        spend = f"~{total / 60:.1f} min in all" if total is not None else "per evaluation"
        line = (f"lda-monitor: one evaluation takes ~{self.eval_seconds:.1f}s and a training step "
                f"~{self.step_seconds:.2f}s; "
                f"at every_n_steps={self.every_n_steps} monitoring will take ~{self.share:.0%} of the run "
                f"({evaluations}{spend})")
        if self.share > self.target_share:
            line += (f". For at most {self.target_share:.0%}, set every_n_steps={self.every_n_steps_for_target}, "
                     "or sample less (samples_per_prompt, max_new_tokens, natural_rate) or set max_eval_seconds")
        return line


def forecast(eval_seconds: float, step_seconds: float, every_n_steps: int, max_steps: int | None,
             warn_time_share: float | None) -> CostForecast:
    return CostForecast(eval_seconds, step_seconds, every_n_steps, max_steps or None,
                        warn_time_share if warn_time_share else DEFAULT_TARGET_SHARE)
