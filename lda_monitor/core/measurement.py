"""The measurement: everything that determines a rollout and its verdicts, declared once.

The callback (:class:`~lda_monitor.config.monitor.MonitorConfig`) and the auditor
(:class:`~lda_monitor.config.audit.AuditConfig`) are this spec plus their own fields, so a run monitored
with one config and audited with the same config samples the same rollouts and reports the same
numbers. Each field carries its help text (TRL style); the command-line flags of
``audit-checkpoints`` and ``sample``, the YAML keys and the docs' config table are all
generated from these fields (:mod:`lda_monitor.core.config_fields`), never written again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..engine.sampling_config import SamplingConfig, sampler_field, sampler_help
from ..errors import UserInputError
from .config_fields import real_list
from .records import KIND_AMPLIFIED, KIND_ESTIMATE, KIND_PLAIN

# The natural-rate ladder: small alphas between the policy and the detection alpha, so
# neighbouring proposals overlap (docs/natural-rate.md). Off by default since issue 32: at the
# default budget it published nothing more than the amplified and plain rollouts alone, in the exact
# worlds or on the real model, and made an evaluation 1.9-2.5x as dear as one without the estimate
# (docs/estimate.md). LADDER_ALPHAS is the ladder those measurements ran, for users who raise its budget.
DEFAULT_ESTIMATE_ALPHAS: tuple[float, ...] = ()
LADDER_ALPHAS = (0.25, 0.5, 1.0)
# Rounds of stratified rollouts when a half-width is asked without natural_rate_max_rollouts.
MAX_ESTIMATE_ROUNDS = 10

# Fields that decide which tokens a rollout holds (and so enter the audit's resume keys).
SAMPLING_FIELDS = ("max_new_tokens", "temperature", "top_k", "top_p", "min_p", "stop_strings",
                   "system_prompt", "chat_template", "seed")


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_real(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass
class Measurement:
    # What to ask and how to judge it.
    prompts: object = field(default=None, metadata={"help": (
        "the prompt suite: a list of strings or chat-message lists, a YAML/JSONL suite file "
        "(optional categories), or a datasets.Dataset with prompt_column"), "metavar": "FILE"})
    prompt_column: str | None = field(default=None, metadata={"help": "prompt column when prompts is a Dataset"})
    category_column: str | None = field(default=None, metadata={
        "help": "category column when prompts is a Dataset"})
    judge: object = field(default=None, metadata={"help": (
        "a judge object, or a spec: 'regex:PATTERN', 'substring:TEXT', a mapping, 'package.module:attr'; "
        "None = no judge: discovery only (the phrases amplification over- and under-produces)"),
        "metavar": "SPEC"})
    # How much to sample.
    alpha: object = field(default="cosine:20->1", metadata={"help": (
        "alpha schedule spec: a number, linear|cosine|exponential:A->B[@N], '0:A,STEP:B', "
        "or adaptive:kl=K,min=A,max=B (see lda_monitor.core.schedules)"), "metavar": "SCHEDULE"})
    alpha_horizon: int | None = field(default=None, metadata={"help": (
        "the step count the alpha schedule spans; None = the run's max_steps (the Trainer's in the "
        "callback, max_steps in the checkpoints' trainer_state.json in the audit)"), "metavar": "STEPS"})
    samples_per_prompt: int = field(default=4, metadata={"help": "amplified rollouts per prompt per evaluation"})
    plain_samples_per_prompt: int | None = field(default=None, metadata={"help": (
        "plain (alpha 0) control rollouts per prompt; None = as many as amplified, 0 = no control")})
    natural_rate: bool = field(default=True, metadata={"help": (
        "estimate the policy's own flag rate (natural_rate): every rollout is scored under every "
        "alpha of the evaluation, and plain rollouts then run the reference forward too (about twice their cost)")})
    estimate_alphas: list[float] = field(default_factory=lambda: list(DEFAULT_ESTIMATE_ALPHAS), metadata={
        "help": ("natural_rate only: small alphas sampled to bridge the policy and the detection alpha, e.g. "
                 "0.25,0.5,1 ([] = none, the default: importance sampling from the amplified and plain rollouts)"),
        "parse": lambda text: list(real_list(text)), "metavar": "A,B,..."})
    estimate_samples_per_prompt: int | None = field(default=None, metadata={"help": (
        "natural_rate only: rollouts per prompt at each estimate alpha; None = a quarter of "
        "samples_per_prompt, at least 1")})
    importance_sampling: bool = field(default=True, metadata={"help": (
        "natural_rate only: the importance-sampling estimate (every rollout scored under every alpha, the ladder "
        "sampled); it wins where the flagged text is short, e.g. the phrase is the answer. Off: the stratified "
        "estimate from plain rollouts alone, at a fraction of the cost")})
    stratified_samples_per_prompt: int = field(default=0, metadata={"help": (
        "natural_rate only: plain rollouts per prompt, on average, added in each round of the stratified "
        "estimate, spread over prompts by where amplified rollouts flag (Neyman allocation) and stopped once "
        "their verdict is decided; 0 = the plain control alone")})
    stratified_floor: int = field(default=1, metadata={"help": (
        "natural_rate only: the fewest stratified rollouts any prompt gets in the first round")})
    natural_rate_half_width: float | None = field(default=None, metadata={"help": (
        "natural_rate only: the relative half-width (e.g. 0.3 for +-30 percent) the stratified estimate's interval "
        "should reach: rounds are added until it does or natural_rate_max_rollouts is spent (then a warning "
        "says so); None = one round")})
    natural_rate_max_rollouts: int | None = field(default=None, metadata={"help": (
        "natural_rate only: the most stratified rollouts one evaluation may add when natural_rate_half_width "
        "is set; None = 10 rounds")})
    discovery_confirm_samples_per_prompt: int = field(default=0, metadata={"help": (
        "judge-free discovery: when an over-produced phrase is borderline (one-sided p <= 0.25, not yet "
        "discovered), draw this many more amplified and as many plain rollouts on each prompt it occurs in, "
        "and confirm it on those alone (lda_monitor.core.discovery); 0 = off")})
    # How to sample: the engine's knobs, declared by SamplingConfig (defaults, help and checks).
    max_new_tokens: int = sampler_field("max_new_tokens")
    temperature: float = sampler_field("temperature")
    top_p: float = sampler_field("top_p")
    top_k: int = sampler_field("top_k")
    min_p: float | None = sampler_field("min_p")
    stop_strings: list[str] = sampler_field("stop_strings", flag="--stop", metavar="TEXT",
                                            help=sampler_help("stop_strings") + " (repeatable flag)")
    system_prompt: str | None = sampler_field("system_prompt", flag="--system", metavar="TEXT")
    chat_template: bool = sampler_field("chat_template")
    seed: int = sampler_field("seed", help=(
        "sampling seed; each evaluation's random streams derive from (seed, step), never the global RNG"))
    batch_size: int = sampler_field("batch_size")

    def __post_init__(self):
        problems = self.problems()
        if problems:
            raise UserInputError(f"invalid {type(self).__name__}: " + "; ".join(problems))

    def problems(self) -> list[str]:
        """Every invalid value, each naming its key (subclasses add theirs)."""
        problems: list[str] = []

        def check(ok: bool, key: str, what: str):
            if not ok:
                problems.append(f"{key}: {what}, got {getattr(self, key)!r}")

        check(self.prompts is not None, "prompts", "required; give a list of prompts, a suite file path, or a Dataset")
        check(is_int(self.samples_per_prompt) and self.samples_per_prompt >= 1, "samples_per_prompt",
              "must be an integer >= 1")
        check(self.plain_samples_per_prompt is None
              or (is_int(self.plain_samples_per_prompt) and self.plain_samples_per_prompt >= 0),
              "plain_samples_per_prompt", "must be None (as many as amplified) or an integer >= 0")
        check(isinstance(self.estimate_alphas, list | tuple)
              and all(is_real(a) and a > 0 for a in self.estimate_alphas),
              "estimate_alphas", "must be a list of alphas > 0")
        check(self.estimate_samples_per_prompt is None
              or (is_int(self.estimate_samples_per_prompt) and self.estimate_samples_per_prompt >= 0),
              "estimate_samples_per_prompt", "must be None (a quarter of samples_per_prompt) or an integer >= 0")
        no_ladder = isinstance(self.estimate_alphas, list | tuple) and not self.estimate_alphas
        check(not (no_ladder and is_int(self.estimate_samples_per_prompt) and self.estimate_samples_per_prompt > 0),
              "estimate_samples_per_prompt",
              "sets the rollouts of a ladder, but estimate_alphas is empty (no ladder, the default); "
              f"give estimate_alphas, e.g. {list(LADDER_ALPHAS)}, or leave estimate_samples_per_prompt unset")
        check(is_int(self.stratified_samples_per_prompt) and self.stratified_samples_per_prompt >= 0,
              "stratified_samples_per_prompt", "must be an integer >= 0")
        per_round = self.stratified_samples_per_prompt if is_int(self.stratified_samples_per_prompt) else 0
        check(is_int(self.stratified_floor) and 0 <= self.stratified_floor and (
            not per_round or self.stratified_floor <= per_round),
              "stratified_floor", "must be an integer from 0 to stratified_samples_per_prompt")
        check(self.natural_rate_half_width is None
              or (is_real(self.natural_rate_half_width) and self.natural_rate_half_width > 0),
              "natural_rate_half_width", "must be None or a relative half-width > 0 (0.3 = +-30%)")
        check(self.natural_rate_half_width is None or self.stratified_samples_per_prompt > 0,
              "natural_rate_half_width", "needs stratified_samples_per_prompt > 0 (the rounds it adds)")
        check(not self.natural_rate or self.importance_sampling or per_round > 0, "importance_sampling",
              "off needs stratified_samples_per_prompt > 0 (the stratified estimate's own rollouts), "
              "or natural_rate off")
        check(self.natural_rate_max_rollouts is None
              or (is_int(self.natural_rate_max_rollouts) and self.natural_rate_max_rollouts >= 1),
              "natural_rate_max_rollouts", "must be None (10 rounds) or an integer >= 1")
        check(is_int(self.discovery_confirm_samples_per_prompt) and self.discovery_confirm_samples_per_prompt >= 0,
              "discovery_confirm_samples_per_prompt", "must be an integer >= 0 (0: no confirmation round)")
        check(self.alpha_horizon is None or (is_int(self.alpha_horizon) and self.alpha_horizon >= 1),
              "alpha_horizon", "must be None (the run's max_steps) or an integer >= 1")
        if self.alpha is not None:
            try:
                from .schedules import parse_schedule

                parse_schedule(self.alpha)
            except UserInputError as exc:
                problems.append(f"alpha: {exc}")
        try:
            self.sampling()
        except (UserInputError, TypeError) as exc:
            problems.append(f"sampling options: {exc}")
        return problems

    @property
    def plain_samples(self) -> int:
        if self.plain_samples_per_prompt is None:
            return self.samples_per_prompt
        return self.plain_samples_per_prompt

    @property
    def estimate_samples(self) -> int:
        if self.estimate_samples_per_prompt is None:
            return max(1, self.samples_per_prompt // 4)
        return self.estimate_samples_per_prompt

    def runs(self, alpha: float) -> list[tuple[str, float, int]]:
        """(kind, alpha, samples per prompt) of each sampling run of an evaluation at ``alpha``:
        the amplified rollouts, the plain control, and with ``natural_rate`` the estimation ladder."""
        out = [(KIND_AMPLIFIED, float(alpha), self.samples_per_prompt)]
        if self.plain_samples:
            out.append((KIND_PLAIN, 0.0, self.plain_samples))
        if self.natural_rate and self.importance_sampling and self.estimate_samples:
            out += [(KIND_ESTIMATE, float(a), self.estimate_samples)
                    for a in dict.fromkeys(self.estimate_alphas) if a not in (0, alpha)]
        return out

    def rollouts_per_prompt(self, alpha: float) -> int:
        """Rollouts an evaluation at ``alpha`` draws per prompt, over all its runs."""
        return sum(n for _, _, n in self.runs(alpha))

    def score_alphas(self, alpha: float) -> tuple[float, ...]:
        """The proposals' alphas (other than 0) every rollout is scored at when estimating."""
        if not (self.natural_rate and self.importance_sampling):
            return ()
        return tuple(a for _, a, _ in self.runs(alpha) if a != 0)

    def estimate_rounds(self, n_prompts: int) -> int:
        """The most rounds of stratified rollouts an evaluation of ``n_prompts`` prompts may run."""
        if not (self.natural_rate and self.stratified_samples_per_prompt):
            return 0
        if self.natural_rate_half_width is None:
            return 1
        if self.natural_rate_max_rollouts is None:
            return MAX_ESTIMATE_ROUNDS
        return max(1, self.natural_rate_max_rollouts // (self.stratified_samples_per_prompt * n_prompts))

    def sampling(self, alpha: float = 0.0, seed: int | None = None) -> SamplingConfig:
        """The engine's settings for one batch of rollouts at ``alpha`` (``seed``: an evaluation's
        derived seed; default the spec's own)."""
        return SamplingConfig.from_fields(
            {name: getattr(self, name) for name in (*SAMPLING_FIELDS, "batch_size")},
            alpha=float(alpha), seed=self.seed if seed is None else seed,
        )

    def horizon(self, run_max_steps: int | None) -> tuple[int | None, str]:
        """The step count the alpha schedule spans, and where it came from."""
        if self.alpha_horizon is not None:
            return self.alpha_horizon, "alpha_horizon in the config"
        if run_max_steps:
            return run_max_steps, "the run's max_steps"
        return None, "unknown: no max_steps recorded; a ramp without @N needs alpha_horizon"

    def fingerprint(self) -> dict:
        """What decides a unit's rollouts and verdicts besides the models and alpha (resume keys)."""
        out = {name: getattr(self, name) for name in SAMPLING_FIELDS}
        out["samples"] = [self.samples_per_prompt, self.plain_samples]
        out["natural_rate"] = [self.natural_rate, list(self.estimate_alphas), self.estimate_samples]
        if self.natural_rate and self.stratified_samples_per_prompt:  # absent by default: old resume keys hold
            out["stratified"] = [self.importance_sampling, self.stratified_samples_per_prompt, self.stratified_floor,
                                 self.natural_rate_half_width, self.natural_rate_max_rollouts]
        elif not self.importance_sampling:
            out["stratified"] = [False]
        out["judge"] = repr(self.judge)
        return out
