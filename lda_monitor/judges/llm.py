"""A judge behind any OpenAI-compatible chat-completions server (vLLM, TGI, Ollama, llama.cpp,
hosted APIs).

Requests run concurrently under ``max_concurrency``, at temperature 0, with a timeout, and are
retried with exponential backoff and jitter on 429, 5xx, timeouts and connection errors (other
4xx are the caller's mistake and fail at once). ``max_requests`` caps the requests of one
evaluation; items beyond it come back unscored saying so. Every failure is an unscored verdict.
A server that cannot be reached ``max_connect_failures`` times in a row (default 3) trips a
circuit breaker (:mod:`lda_monitor.judges.health`): the judge sends nothing more for the rest of
that evaluation and its remaining items are unscored saying why, so a dead server costs seconds,
not the full retry schedule of every item.
The API key is read from the environment variable *named* by ``api_key_env``; the value is
never stored on the judge, in reprs, verdicts, errors or logs.
"""

from __future__ import annotations

import asyncio
import os
import random

import httpx

from ..errors import UserInputError
from .base import Judge, Verdict
from .health import CircuitBreaker
from .rubrics import load_rubric, single_question_rubric
from .scoring import score_from_reply

RETRY_STATUS = {429, 500, 502, 503, 504}


class _Failed(Exception):
    """A request that exhausted its retries or cannot succeed; the message is safe to show."""


def run_coroutine(coro):
    """Run a coroutine from sync code, even when the caller is inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


class LLMJudge(Judge):
    name = "llm"

    def __init__(self, base_url: str, model: str, *, api_key_env: str | None = None, rubric: str | None = None,
                 prompt: str | None = None, flag_below: float | None = None, flag_above: float | None = None,
                 timeout: float = 60.0, max_retries: int = 4, max_concurrency: int = 8,
                 max_requests: int | None = None, backoff: float = 1.0, max_connect_failures: int | None = 3,
                 name: str | None = None, **base):
        super().__init__(name=name, **base)
        if (rubric is None) == (prompt is None):
            raise UserInputError(
                "an llm judge needs exactly one of 'rubric' (name or YAML path) or 'prompt' (a template)")
        self.rubric = load_rubric(rubric) if rubric else single_question_rubric(prompt, flag_below, flag_above)
        if api_key_env and api_key_env not in os.environ:
            raise UserInputError(f"the llm judge reads its API key from ${api_key_env}, which is not set")
        self.base_url, self.model, self.api_key_env = base_url.rstrip("/"), model, api_key_env
        self.timeout, self.max_retries, self.backoff = timeout, max_retries, backoff
        self.max_concurrency, self.max_requests = max_concurrency, max_requests
        self.breaker = CircuitBreaker(max_connect_failures)

    def __repr__(self) -> str:
        return (f"LLMJudge(name={self.name!r}, base_url={self.base_url!r}, model={self.model!r}, "
                f"rubric={self.rubric.name!r})")

    def judge(self, prompts, completions, metadata):
        with self.breaker.scope():
            return run_coroutine(self._judge_all(prompts, completions))

    async def _judge_all(self, prompts, completions):
        headers = {"Authorization": f"Bearer {os.environ[self.api_key_env]}"} if self.api_key_env else {}
        limit = asyncio.Semaphore(self.max_concurrency)
        budget = [self.max_requests if self.max_requests is not None else float("inf")]
        async with httpx.AsyncClient(timeout=self.timeout, headers=headers) as client:
            tasks = [self._judge_one(client, limit, budget, q, a) for q, a in zip(prompts, completions, strict=True)]
            return await asyncio.gather(*tasks)

    async def _judge_one(self, client, limit, budget, question, answer) -> Verdict:
        scores = {}
        for q in self.rubric.questions:
            if budget[0] < 1:
                return Verdict.unscored(f"{self.name}: request cap max_requests={self.max_requests} reached; "
                                        "raise max_requests to judge every rollout")
            budget[0] -= 1
            try:
                score = await self._score(client, limit, q.template.format(question=question, answer=answer))
            except _Failed as exc:
                return Verdict.unscored(f"{self.name}: {exc}")
            if score is None:
                return Verdict.unscored(f"{self.name}: the judge gave no usable {q.name} score (under 25% "
                                        "probability on numbers / no number in the reply)")
            scores[q.name] = score
        return self.rubric.verdict(scores)

    async def _score(self, client, limit, content: str) -> float | None:
        body = {"model": self.model, "messages": [{"role": "user", "content": content}], "temperature": 0,
                "max_tokens": 5, "logprobs": True, "top_logprobs": 20}
        data = await self._post(client, limit, body)
        try:
            choice = data["choices"][0]
            return score_from_reply(choice["message"]["content"] or "", (choice.get("logprobs") or {}).get("content"))
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise _Failed(f"malformed reply from {self.base_url} ({type(exc).__name__})") from None

    async def _post(self, client, limit, body) -> dict:
        url = f"{self.base_url}/chat/completions"
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                if self.breaker.is_open:
                    raise _Failed(self.breaker.reason())
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1) * (0.5 + random.random()))
            try:
                async with limit:
                    if self.breaker.is_open:
                        raise _Failed(self.breaker.reason())
                    response = await client.post(url, json=body)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                last = f"{type(exc).__name__} talking to {self.base_url}"
                self.breaker.connection_failed(last)
                continue
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                last = f"{type(exc).__name__} talking to {self.base_url}"
                continue
            self.breaker.connected()
            if response.status_code in RETRY_STATUS:
                last = f"HTTP {response.status_code} from {self.base_url}"
                continue
            if response.status_code >= 400:
                raise _Failed(f"HTTP {response.status_code} from {self.base_url} (not retried)")
            try:
                return response.json()
            except ValueError:
                raise _Failed(f"malformed JSON from {self.base_url}") from None
        raise _Failed(f"{last} after {self.max_retries + 1} attempts")
