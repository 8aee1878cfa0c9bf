"""Build any judge from one spec: a string, a mapping (from YAML), or a judge object.

* ``"regex:PATTERN"``, ``"substring:TEXT"``: built-ins by name.
* ``{"type": "any", "judges": [...], "name": ...}``: compositions (any/all/majority).
* ``{"type": "package.module:attr", ...}`` or ``"package.module:attr"``: a third-party judge
  class or factory called with the mapping's other keys.
* ``"inspect:package.module:function"`` or ``{"type": "inspect", "scorer": "package.module:function",
  "target": ...}``: an inspect_ai scorer (:mod:`.inspect_scorer`).
* Entry points in the group ``lda_monitor.judges``: a name another package registers.
Built-ins are imported lazily so optional dependencies load only when used.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata

from ..errors import UserInputError
from .base import Judge

ENTRY_POINT_GROUP = "lda_monitor.judges"
BUILTINS = {
    "regex": "lda_monitor.judges.regex:RegexJudge",
    "substring": "lda_monitor.judges.regex:SubstringJudge",
    "llm": "lda_monitor.judges.llm:LLMJudge",
    "hf-chat": "lda_monitor.judges.hf_chat:HFChatJudge",
    "classifier": "lda_monitor.judges.classifier:ClassifierJudge",
    "inspect": "lda_monitor.judges.inspect_scorer:InspectScorerJudge",
}
COMPOSITIONS = ("any", "all", "majority")
PATTERN_JUDGES = ("regex", "substring")  # judges a bare string configures with its pattern
STRING_JUDGES = (*PATTERN_JUDGES, "inspect")  # and "inspect:module:function", with its scorer


def _load(target: str):
    module, _, attr = target.partition(":")
    try:
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except ModuleNotFoundError as exc:
        if "." not in module and exc.name == module:
            # 'regx:foo' reads as module 'regx', attribute 'foo'; far likelier a mistyped kind.
            raise _unknown(module, f" (in {target!r})") from None
        raise UserInputError(f"cannot import judge {target!r}: {exc}") from None
    except (ImportError, AttributeError) as exc:
        raise UserInputError(f"cannot import judge {target!r}: {exc}") from None
    return obj


def _unknown(kind: str, where: str = "") -> UserInputError:
    known = sorted([*BUILTINS, *COMPOSITIONS, *_entry_points()])
    close = difflib.get_close_matches(kind, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return UserInputError(f"unknown judge type {kind!r}{where}{hint} (known: {', '.join(known)}; "
                          "or 'package.module:attr')")


def _entry_points() -> dict:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _factory(kind: str):
    """The class or factory behind a judge type: built-in, 'module:attr', or entry point."""
    if kind in BUILTINS:
        return _load(BUILTINS[kind])
    if ":" in kind:
        return _load(kind)
    plugins = _entry_points()
    if kind in plugins:
        return plugins[kind].load()
    raise _unknown(kind)


def check_judge_spec(spec) -> None:
    """Reject a mistyped spec before anything heavy loads (a command line checks its arguments
    first): every kind name is resolved and pattern judges are built (cheap; a bad regex shows
    here). Other built-ins are only looked up, not constructed: a local-model judge would load
    its model, which the command does once, later."""
    if isinstance(spec, Judge) or not isinstance(spec, str | dict):
        return
    if isinstance(spec, str):
        if spec.partition(":")[0] in STRING_JUDGES:
            build_judge(spec)  # an inspect scorer is only imported and called to make it: cheap
            return
        spec = {"type": spec}
    if "type" not in spec:
        raise UserInputError(f"a judge spec is a string or a mapping with 'type'; got {spec!r:.80}")
    kind = spec["type"]
    if kind in COMPOSITIONS:
        for member in spec.get("judges", []):
            check_judge_spec(member)
    elif kind in PATTERN_JUDGES:
        build_judge(spec)
    elif kind not in BUILTINS:
        _factory(kind)


def build_judge(spec) -> Judge:
    """A judge from a spec string, a mapping, or a judge object (returned as is; any object
    with ``name`` and ``evaluate`` counts)."""
    if isinstance(spec, Judge) or (hasattr(spec, "evaluate") and hasattr(spec, "name")):
        return spec
    if isinstance(spec, str):
        kind, sep, arg = spec.partition(":")
        if kind in STRING_JUDGES:
            if not arg:
                raise UserInputError(f"judge spec {spec!r} needs an argument, e.g. '{kind}:PATTERN'")
            return _factory(kind)(arg)
        return build_judge({"type": spec})
    if not isinstance(spec, dict) or "type" not in spec:
        raise UserInputError(f"a judge spec is a string or a mapping with 'type'; got {spec!r:.80}")
    options = {k: v for k, v in spec.items() if k != "type"}
    kind = spec["type"]
    if kind in COMPOSITIONS:
        from .compose import CompositeJudge

        members = [build_judge(m) for m in options.pop("judges", [])]
        return CompositeJudge(kind, members, **options)
    if kind in PATTERN_JUDGES:
        values = options.pop("patterns", None) or options.pop("pattern", None) or options.pop("substrings", None)
        return _factory(kind)(values or [], **options)
    return _instantiate(_factory(kind), options)


def _instantiate(factory, options: dict) -> Judge:
    judge = factory(**options) if callable(factory) and not isinstance(factory, Judge) else factory
    if not isinstance(judge, Judge) and not (hasattr(judge, "evaluate") and hasattr(judge, "name")):
        raise UserInputError(f"{factory!r} did not build a judge (needs .name and .evaluate)")
    return judge
