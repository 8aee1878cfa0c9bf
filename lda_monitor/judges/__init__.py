"""Judges decide which rollouts show the behaviour being monitored.

``build_judge(spec)`` builds any judge; ``judge(prompts, completions)`` returns one
:class:`Verdict` per item and ``judge.evaluate(...)`` returns every judge's verdicts by name
(a composition's members included), so rates are reported per judge, never averaged.
"""

from .base import Judge, Verdict, strip_reasoning
from .registry import build_judge

__all__ = ["Judge", "Verdict", "build_judge", "strip_reasoning"]
