"""What every handler of both APIs works with: one :class:`ServerState` per app, given to handlers
by FastAPI's dependency injection (``state: State`` in a handler's signature)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from ..config.server import SERVER_DEFAULTS, ServerOptions
from ..declared import declared_field
from ..engine.chat import encode_rendered, render_prompt
from ..engine.sampling import Rollout, SamplingConfig
from ..errors import UserInputError
from .batcher import RequestBatcher
from .errors import GenerationFailed, RequestError


@dataclass(kw_only=True)
class Limits:
    """What one request may ask for (declared, with the flags' help, by
    :class:`~lda_monitor.config.server.ServerOptions`)."""

    max_prompt_tokens: int = declared_field(ServerOptions, "max_prompt_tokens")
    max_prompts: int = declared_field(ServerOptions, "max_prompts")
    max_samples: int = declared_field(ServerOptions, "max_samples")


@dataclass
class ServerState:
    """The model pair behind its batcher, the limits, the judge and the defaults of both APIs."""

    pair: object
    batcher: RequestBatcher
    model_after: str
    model_before: str
    judge: object = None
    limits: Limits = field(default_factory=Limits)
    default_alpha: float = SERVER_DEFAULTS.alpha  # the OpenAI API's model "lda" without an alpha field
    started: int = field(default_factory=lambda: int(time.time()))  # the OpenAI model cards' "created"

    @property
    def tokenizer(self):
        return self.pair.tokenizer

    def render(self, prompt: str | list, loc: list, *, system: str | None = None, chat_template: bool = True) -> str:
        """The text both models see; refuses prompts over the token limit."""
        try:
            rendered = render_prompt(self.tokenizer, prompt, system=system, chat_template=chat_template)
        except UserInputError as exc:  # no chat template
            raise RequestError(["apply_chat_template"], str(exc)) from None
        n = len(encode_rendered(self.tokenizer, rendered, chat_template=chat_template))
        if n > self.limits.max_prompt_tokens:
            raise RequestError(loc, f"the prompt is {n} tokens after formatting; this server accepts at most "
                                    f"{self.limits.max_prompt_tokens} (--max-prompt-tokens)", "too_long")
        return rendered

    def check_samples(self, samples: int, name: str) -> None:
        if samples > self.limits.max_samples:
            raise RequestError([name], f"{samples} completions per prompt; this server allows at most "
                                       f"{self.limits.max_samples} (--max-samples)", "less_than_equal")

    def check_prompts(self, count: int, name: str) -> None:
        if count > self.limits.max_prompts:
            raise RequestError([name], f"{count} prompts; this server accepts at most {self.limits.max_prompts} "
                                       "per request (--max-prompts)", "too_long")

    async def run(self, prompts: list, config: SamplingConfig, samples: int = 1, top_logprobs: int = 0, *,
                  seeded: bool) -> list[Rollout]:
        """The rollouts, from the engine thread; ``seeded``: the client chose the seed (see :mod:`.batcher`)."""
        try:
            return await asyncio.wrap_future(self.batcher.submit(prompts, config, samples, top_logprobs, seeded))
        except UserInputError as exc:
            raise RequestError([], str(exc)) from None
        except Exception as exc:  # the request fails; the engine thread serves on
            raise GenerationFailed(f"generation failed: {type(exc).__name__}: {exc}") from exc


def server_state(request: Request) -> ServerState:
    return request.app.state.lda


State = Annotated[ServerState, Depends(server_state)]
