"""Compositions: one verdict from several named member judges, every member's kept too.

Rules with unscored members (None):
* ``any``: True if any scored member flags; else unscored if some member is unscored; else False.
* ``all``: False if any scored member does not flag; else unscored if some member is unscored;
  else True.
* ``majority``: over scored members only, and only when more than half of the members scored;
  otherwise unscored. Ties are not flagged.

Where a flagged composition was decided: when enough members had flagged irreversibly that no
later text could change the outcome, i.e. the k-th earliest ``decided_at`` among the flagging
members, with k = 1 for ``any``, every member for ``all`` and a strict majority of all members
for ``majority`` (k flags out of n make a majority whatever the other members say, scored or not).
A member flag without a position counts as decided at the end, so with fewer than k positioned
flags the composition reports none.
"""

from __future__ import annotations

from ..errors import UserInputError
from .base import Judge, Verdict


def _any(flags):
    if any(f is True for f in flags):
        return True
    return None if any(f is None for f in flags) else False


def _all(flags):
    if any(f is False for f in flags):
        return False
    return None if any(f is None for f in flags) else True


def _majority(flags):
    scored = [f for f in flags if f is not None]
    if len(scored) * 2 <= len(flags):
        return None
    return sum(scored) * 2 > len(scored)


RULES = {"any": _any, "all": _all, "majority": _majority}


def _needed(rule: str, members: int) -> int:
    """How many irreversible member flags make the composition's flag irreversible."""
    return {"any": 1, "all": members, "majority": members // 2 + 1}[rule]


def decided_at(rule: str, verdicts) -> int | None:
    """Where a flagged composition of ``verdicts`` became certain (see the module doc)."""
    positions = sorted(v.decided_at for v in verdicts if v.flagged and v.decided_at is not None)
    k = _needed(rule, len(verdicts))
    return positions[k - 1] if len(positions) >= k else None


class CompositeJudge(Judge):
    def __init__(self, rule: str, members: list[Judge], *, name: str | None = None, **base):
        super().__init__(name=name or rule, **base)
        if rule not in RULES or not members:
            raise UserInputError(f"a composition needs a rule in {sorted(RULES)} and at least one member judge")
        names = [m.name for m in members]
        if len(set(names)) != len(names) or self.name in names:
            raise UserInputError(
                f"member judges need distinct names (and not {self.name!r}); got {names}: set 'name' on each")
        self.rule, self.members = rule, members

    def evaluate(self, prompts, completions, metadata=None):
        out = {}
        for member in self.members:
            out.update(member.evaluate(prompts, completions, metadata))
        combine = RULES[self.rule]
        own = []
        for i in range(len(prompts)):
            flags = [out[m.name][i].flagged for m in self.members]
            flagged = combine(flags)
            errors = [f"{m.name}: {out[m.name][i].error}" for m in self.members if out[m.name][i].flagged is None]
            members = [out[m.name][i] for m in self.members]
            own.append(Verdict(flagged=flagged, label=self.rule,
                               error="; ".join(errors) if flagged is None else None,
                               decided_at=decided_at(self.rule, members) if flagged else None))
        return {self.name: own, **out}
