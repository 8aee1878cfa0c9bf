"""Rollouts as the OpenAI API shows them: choices cut at stop strings, per-token pieces of the
text with their log-probs, usage, and server-sent events."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from ..engine.sampling import STOP_MAX_TOKENS, STOP_STRING, Rollout, SamplingConfig


@dataclass
class Token:
    id: int
    piece: str  # the slice of the choice's text this token produced (chunks concatenate to it)
    offset: int  # where ``piece`` starts in the choice's text
    logprob: float
    top: list[tuple[int, float]]


@dataclass
class Choice:
    index: int
    text: str
    finish_reason: str
    tokens: list[Token]
    tail: str  # text after the last whole token: the start of a token that runs into a stop string


def choice(tokenizer, index: int, r: Rollout, stops: tuple[str, ...], with_tokens: bool) -> Choice:
    """One choice: the text cut before a stop string (as OpenAI does), and per token its piece of
    that text (by incremental decoding without special tokens, as ``completion`` is decoded), its
    log-prob and alternatives when asked for. Like
    OpenAI's, the tokens stop before the stop string: a token reaching into it is left out, and
    the text it contributed before the stop string is the choice's ``tail``."""
    full = text = r.completion
    if r.stop_reason == STOP_STRING:
        text = full[: min((i for s in stops if (i := full.find(s)) >= 0), default=len(full))]
    finish = "length" if r.stop_reason == STOP_MAX_TOKENS else "stop"
    if not with_tokens:
        return Choice(index, text, finish, [], "")
    ids, tokens, start = r.completion_token_ids, [], 0
    for i, token_id in enumerate(ids):
        decoded = len(full) if i == len(ids) - 1 else len(tokenizer.decode(ids[: i + 1], skip_special_tokens=True))
        end = min(max(start, decoded), len(full))
        if end > len(text):
            break
        top = r.top_logprobs[i] if r.top_logprobs is not None else []
        tokens.append(Token(token_id, full[start:end], start, r.logprob_sampled[i], top))
        start = end
    return Choice(index, text, finish, tokens, text[start:])


def token_counts(rollouts: list[Rollout]) -> tuple[int, int]:
    """(prompt tokens, completion tokens); a prompt sampled n times counts once."""
    prompt = sum(len(r.prompt_token_ids) for r in rollouts if r.sample_index == 0)
    return prompt, sum(r.num_tokens for r in rollouts)


def usage(rollouts: list[Rollout]) -> dict:
    prompt, completion = token_counts(rollouts)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def token_text(tokenizer, token_id: int) -> str:
    return tokenizer.decode([token_id], skip_special_tokens=False)


def chat_logprob(tokenizer, t: Token) -> dict:
    text = token_text(tokenizer, t.id)
    return {"token": text, "logprob": t.logprob, "bytes": list(text.encode()),
            "top_logprobs": [{"token": (alt := token_text(tokenizer, i)), "logprob": lp, "bytes": list(alt.encode())}
                             for i, lp in t.top]}


def completion_logprobs(tokenizer, tokens: list[Token]) -> dict:
    return {"tokens": [token_text(tokenizer, t.id) for t in tokens], "token_logprobs": [t.logprob for t in tokens],
            "top_logprobs": [{token_text(tokenizer, i): lp for i, lp in t.top} for t in tokens],
            "text_offset": [t.offset for t in tokens]}


def envelope(kind: str, model: str, config: SamplingConfig) -> dict:
    """Fields every response and chunk carries; ``alpha`` and ``seed`` are extras that say how
    to reproduce it (SDKs keep unknown fields)."""
    prefix = "chatcmpl" if kind.startswith("chat") else "cmpl"
    return {"id": f"{prefix}-{uuid.uuid4().hex}", "object": kind, "created": int(time.time()), "model": model,
            "system_fingerprint": f"lda-monitor alpha={config.alpha:g}", "alpha": config.alpha, "seed": config.seed}


def streamed(chunk_type: type[BaseModel], head: dict, choices: list[Choice], used: dict, include_usage: bool,
             parts: Callable[[Choice], Iterator[dict]]) -> Iterator[BaseModel]:
    """OpenAI's streamed chunks of ``choices`` as ``chunk_type``: ``parts(choice)`` yields the fields
    of each of its chunks (a delta or text, logprobs, finish_reason). With ``include_usage`` every
    chunk carries ``usage: null`` and a last chunk without choices carries the usage, as OpenAI
    streams it."""
    extra = {"usage": None} if include_usage else {}
    for c in choices:
        for fields in parts(c):
            yield chunk_type(**head, choices=[{"index": c.index, **fields}], **extra)
    if include_usage:
        yield chunk_type(**head, choices=[], usage=used)


def sse(chunks: Iterator[BaseModel], *, done: bool = True, named: bool = False) -> StreamingResponse:
    """Server-sent events, one per chunk (the fields it was given: see :mod:`.openai_replies`);
    ``named``: each carries ``event: <its type>`` (the Responses API); ``done``: a final ``[DONE]``
    (chat and completions)."""
    def events():
        for chunk in chunks:
            yield (f"event: {chunk.type}\n" if named else "") + f"data: {chunk.model_dump_json(exclude_unset=True)}\n\n"
        if done:
            yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")
