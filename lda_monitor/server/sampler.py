"""The one mapping from any request (reference schema, OpenAI chat, completions, responses) to
the engine's :class:`~lda_monitor.engine.sampling_config.SamplingConfig`.

Each request schema keeps its public names and defaults and says, in ``sampler()``, which
engine field each of its values is; the values are then checked once, by the engine's own rules
(:func:`~lda_monitor.engine.sampling_config.sampler_problems`), and a refusal names the
request's field. The default seed is drawn here and nowhere else.
"""

from __future__ import annotations

import secrets

from pydantic import Field

from ..engine.sampling_config import SamplingConfig, sampler_help, sampler_problems
from .errors import RequestError

# Knobs greedy decoding ignores: dropped from a greedy request's settings, so greedy requests
# with different (ignored) values still share a batch.
GREEDY_IGNORES = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": None}


def api_field(name: str, default, extra: str = "", **bounds):
    """A request field that is the sampler's field ``name``: its help, with the API's own default."""
    return Field(default, description=sampler_help(name) + extra, **bounds)


def draw_seed(requested: int | None) -> int:
    """The request's seed, or a fresh random one (returned in the response, so it can be replayed)."""
    return requested if requested is not None else secrets.randbits(63)


def sampling_config(request, *, alpha: float) -> SamplingConfig:
    """The engine's settings for ``request`` (a schema with ``sampler()``, ``public_name()`` and
    ``seed``) at ``alpha``; invalid values are refused naming the request's own fields."""
    values = {**request.sampler(), "alpha": alpha, "seed": draw_seed(request.seed)}
    problems = sampler_problems(values)
    if problems:
        named = [(name, request.public_name(name)) for name, _ in problems]
        raise RequestError.many([([public], public + message[len(name):])
                                 for (name, public), (_, message) in zip(named, problems, strict=True)])
    if values.get("greedy"):
        values.update(GREEDY_IGNORES)
    return SamplingConfig(**values)
