"""The policy's flag rate by brute force: many plain rollouts, judged. The reference that the
natural-rate estimate is checked against, in the benchmark (``natural_rate_bench``) and in the
full demo's one-step check (:class:`BruteForceCheck`)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from transformers import TrainerCallback

BRUTE_CHUNK = 20  # plain rollouts per prompt in one brute-force chunk (its own seed), cached as it finishes
BRUTE_SEED = 987_654  # chunk i samples with BRUTE_SEED + i: streams no evaluation of a run uses


def brute_force_rate(pair, items, judge, n_per_prompt: int, sampling, *, cache: Path | None = None,
                     alpha: float = 0.0, seed: int = BRUTE_SEED):
    """The policy's plain flag rate from ``n_per_prompt`` plain rollouts per prompt (Wilson interval).

    ``alpha`` > 0 counts amplified rollouts of ``pair`` instead, the same way (the detection
    benchmark's amplified rate); ``seed`` is the first chunk's seed (give another stream to
    another count).

    ``sampling``: the :class:`~lda_monitor.engine.sampling_config.SamplingConfig` the estimate's
    target is sampled with (its alpha and seed are replaced: ``alpha``, and the chunk's seed).
    Sampled in chunks of ``BRUTE_CHUNK`` rollouts per prompt, chunk ``i`` with seed
    ``seed + i``, so a larger count extends a smaller one; with ``cache`` (a JSON file) each
    chunk's count is saved as it finishes, and a rerun or a larger count reuses every cached chunk
    of the size it needs.
    """
    from ..core.evaluation import judge_rollouts
    from ..core.stats import flag_rate, rate_estimate
    from ..engine.sampling import sample

    cached = json.loads(cache.read_text()) if cache is not None and cache.is_file() else []
    chunks = []  # {"per_prompt", "k", "n"} of each chunk; a cached chunk counts only at its own size
    for i in range(-(-n_per_prompt // BRUTE_CHUNK)):
        size = min(BRUTE_CHUNK, n_per_prompt - i * BRUTE_CHUNK)
        if i < len(cached) and cached[i]["per_prompt"] == size:
            chunks.append(cached[i])
            continue
        rollouts = sample(pair, [item.prompt for item in items], replace(sampling, alpha=alpha, seed=seed + i),
                          samples_per_prompt=size)
        rate, _ = flag_rate([v.flagged for v in judge_rollouts(judge, items, rollouts)[judge.name]])
        chunks.append({"per_prompt": size, "k": rate.k, "n": rate.n})
        if cache is not None:
            cache.write_text(json.dumps(chunks + cached[len(chunks):]))
    return rate_estimate(k=sum(c["k"] for c in chunks), n=sum(c["n"] for c in chunks))


@dataclass(frozen=True)
class CheckResult:
    """The monitor's natural-rate numbers at one step beside the brute-force rate there."""

    step: int
    estimate: float | None  # None: withheld
    lo: float | None
    hi: float | None  # alone: the withheld estimate's upper bound
    brute_k: int
    brute_n: int
    brute_rate: float
    brute_lo: float
    brute_hi: float
    seconds: float

    @property
    def covered(self) -> bool | None:
        """Whether the published interval (or the bound) contains the brute-force rate."""
        if self.hi is None:
            return None
        return (self.lo or 0.0) <= self.brute_rate <= self.hi

    @property
    def within_2x(self) -> bool | None:
        if self.estimate is None or not self.brute_rate:
            return None
        return 0.5 <= self.estimate / self.brute_rate <= 2

    def to_dict(self) -> dict:
        """The fields and the two verdicts, as ``summary.json`` holds them."""
        return {**asdict(self), "covered": self.covered, "within_2x": self.within_2x}

    def line(self) -> str:
        brute = (f"{self.brute_k}/{self.brute_n} plain rollouts = {self.brute_rate:.4f} "
                 f"[{self.brute_lo:.4f}, {self.brute_hi:.4f}] (Wilson 95%, {self.seconds:.0f} s)")
        if self.estimate is not None:
            verdict = ("inside" if self.covered else "OUTSIDE") + " the interval, " + (
                "within" if self.within_2x else "NOT within") + " 2x"
            return (f"brute-force check at step {self.step}: natural-rate estimate {self.estimate:.4f} "
                    f"[{self.lo:.4f}, {self.hi:.4f}]; brute force {brute}: {verdict}")
        bound = "no bound" if self.hi is None else (
            f"upper bound {self.hi:.4f} ({'holds' if self.covered else 'VIOLATED'})")
        return f"brute-force check at step {self.step}: natural-rate estimate withheld, {bound}; brute force {brute}"


class BruteForceCheck(TrainerCallback):
    """Checks one of the monitor's natural-rate numbers against brute force, during training.

    At the first evaluation whose estimate is published (else the last evaluation), samples
    ``n_per_prompt`` plain rollouts per monitor prompt from the in-training policy with the
    monitor's own sampling settings, judges them with the monitor's judge, and prints the
    estimate beside the brute-force rate. Placed after the monitor in the callback list; the
    training state (modes, RNGs, ``use_cache``) is restored as the monitor restores it.
    """

    def __init__(self, monitor, n_per_prompt: int, echo=print):
        self.monitor, self.n_per_prompt, self.echo = monitor, n_per_prompt, echo
        self.result: CheckResult | None = None

    def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        history = self.monitor.progress.history
        if (self.result is None and history and history[-1]["step"] == state.global_step
                and "lda/natural_rate" in history[-1]):
            self._check(history[-1], model, processing_class)

    def on_train_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if self.result is None and self.monitor.progress.history:
            self._check(self.monitor.progress.history[-1], model, processing_class)

    def _check(self, metrics: dict, model, tokenizer) -> None:
        import torch

        from ..engine.pairs import TwoModelPair
        from ..monitor.hygiene import preserved_training_state

        start = time.perf_counter()
        self.echo(f"[demo] brute-force check at step {metrics['step']}: "
                  f"{self.n_per_prompt * len(self.monitor.items)} plain rollouts of the policy ...")
        with preserved_training_state([model], tokenizer), torch.no_grad():
            model.eval()
            pair = TwoModelPair(model, model, tokenizer)  # plain sampling runs the policy alone
            brute = brute_force_rate(pair, self.monitor.items, self.monitor.judge, self.n_per_prompt,
                                     self.monitor.config.sampling())
        self.result = CheckResult(
            step=int(metrics["step"]), estimate=metrics.get("lda/natural_rate"),
            lo=metrics.get("lda/natural_rate_lo"), hi=metrics.get("lda/natural_rate_hi"),
            brute_k=brute.k, brute_n=brute.n, brute_rate=brute.rate, brute_lo=brute.lo, brute_hi=brute.hi,
            seconds=time.perf_counter() - start,
        )
        self.echo(self.result.line())
