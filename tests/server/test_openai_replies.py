"""The reply models of the OpenAI routes hold what the openai SDK's own types require, and a reply
of ours validates as the SDK's type (the SDK is the independent reference for the shapes)."""

from __future__ import annotations

import json

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")

from openai.types import Completion as SDKCompletion  # noqa: E402
from openai.types import CompletionChoice as SDKCompletionChoice  # noqa: E402
from openai.types import CompletionUsage  # noqa: E402
from openai.types import Model as SDKModel  # noqa: E402
from openai.types.chat import ChatCompletion as SDKChatCompletion  # noqa: E402
from openai.types.chat import ChatCompletionChunk as SDKChatCompletionChunk  # noqa: E402
from openai.types.chat import ChatCompletionTokenLogprob  # noqa: E402
from openai.types.chat.chat_completion import Choice as SDKChatChoice  # noqa: E402
from openai.types.chat.chat_completion_chunk import Choice as SDKChunkChoice  # noqa: E402
from openai.types.responses import Response as SDKResponse  # noqa: E402
from openai.types.responses import (  # noqa: E402
    ResponseContentPartAddedEvent,
    ResponseCreatedEvent,
    ResponseOutputItemAddedEvent,
    ResponseStreamEvent,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
)
from pydantic import TypeAdapter  # noqa: E402

from lda_monitor.server import openai_replies as ours  # noqa: E402

PAIRS = [(ours.ModelCard, SDKModel), (ours.Usage, CompletionUsage), (ours.TokenLogprob, ChatCompletionTokenLogprob),
         (ours.ChatChoice, SDKChatChoice), (ours.ChatCompletion, SDKChatCompletion),
         (ours.CompletionChoice, SDKCompletionChoice), (ours.Completion, SDKCompletion), (ours.Response, SDKResponse),
         (ours.ChatChunkChoice, SDKChunkChoice), (ours.ChatCompletionChunk, SDKChatCompletionChunk),
         (ours.CompletionChunk, SDKCompletion), (ours.ResponseLifecycleEvent, ResponseCreatedEvent),
         (ours.OutputItemEvent, ResponseOutputItemAddedEvent), (ours.ContentPartEvent, ResponseContentPartAddedEvent),
         (ours.TextDeltaEvent, ResponseTextDeltaEvent), (ours.TextDoneEvent, ResponseTextDoneEvent)]


@pytest.mark.parametrize("model, sdk", PAIRS, ids=[sdk.__name__ for _, sdk in PAIRS])
def test_every_field_the_sdk_requires_is_declared(model, sdk):
    required = {name for name, f in sdk.model_fields.items() if f.is_required()}
    assert required <= set(model.model_fields), f"{model.__name__} lacks {sorted(required - set(model.model_fields))}"


def _envelope(kind: str) -> dict:
    return dict(id="x-1", object=kind, created=1, model="lda", system_fingerprint="lda-monitor alpha=2", alpha=2.0,
                seed=7)


def test_replies_validate_as_the_sdks_types():
    usage = ours.Usage(prompt_tokens=3, completion_tokens=4, total_tokens=7)
    top = ours.TopLogprob(token="b", logprob=-2.5, bytes=[98])
    chat = ours.ChatCompletion(**_envelope("chat.completion"), usage=usage, choices=[ours.ChatChoice(
        index=0, message=ours.AssistantMessage(content="hi"), finish_reason="length",
        logprobs=ours.ChoiceLogprobs(content=[ours.TokenLogprob(token="a", logprob=-0.5, bytes=[97],
                                                                top_logprobs=[top])]))])
    parsed = SDKChatCompletion.model_validate(chat.model_dump(mode="json"))
    assert parsed.choices[0].logprobs.content[0].top_logprobs[0].logprob == -2.5
    assert (parsed.model_extra or {}).get("alpha") == 2.0  # the SDK keeps the extras
    text = ours.Completion(**_envelope("text_completion"), usage=usage, choices=[ours.CompletionChoice(
        index=0, text="hi", finish_reason="stop", logprobs=ours.CompletionLogprobs(
            tokens=["h", "i"], token_logprobs=[-1.0, -0.25], top_logprobs=[{"h": -1.0}, {"i": -0.25}],
            text_offset=[0, 1]))])
    assert SDKCompletion.model_validate(text.model_dump(mode="json")).choices[0].logprobs.text_offset == [0, 1]
    card = ours.ModelList(data=[ours.ModelCard(id="lda", created=1, owned_by="lda-monitor")])
    assert SDKModel.model_validate(card.model_dump(mode="json")["data"][0]).id == "lda"


def test_a_response_validates_as_the_sdks_response():
    message = ours.OutputMessage(id="msg_1", status="incomplete", content=[ours.OutputText(text="hi there")])
    response = ours.Response(
        id="resp_1", created_at=1, status="incomplete", incomplete_details={"reason": "max_output_tokens"},
        instructions=None, max_output_tokens=2, model="lda", output=[message], output_text="hi there",
        reasoning=ours.Reasoning(), temperature=1.0, text=ours.TextFormat(), top_p=1.0, alpha=2.0, seed=7,
        usage={"input_tokens": 3, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
               "output_tokens": 2, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 5})
    parsed = SDKResponse.model_validate(response.model_dump(mode="json"))
    assert parsed.output_text == "hi there" and parsed.incomplete_details.reason == "max_output_tokens"
    assert parsed.usage.total_tokens == 5


def test_the_servers_replies_validate_as_the_sdks_types(tokenizer):
    from fastapi.testclient import TestClient

    from lda_monitor.engine.pairs import TwoModelPair
    from lda_monitor.server import create_app
    from tests.tiny import tiny_llama

    app = create_app(TwoModelPair(tiny_llama(tokenizer, seed=1), tiny_llama(tokenizer, seed=2), tokenizer),
                     model_after="a", model_before="b")
    turn = [{"role": "user", "content": "tell me a story"}]
    with TestClient(app) as client:
        chat = client.post("/v1/chat/completions", json={"model": "lda", "messages": turn, "max_tokens": 4,
                                                          "logprobs": True, "top_logprobs": 2, "n": 2})
        text = client.post("/v1/completions", json={"model": "after", "prompt": ["hello", "the cat"],
                                                     "max_tokens": 3, "logprobs": 2})
        response = client.post("/v1/responses", json={"model": "lda", "input": "hello", "max_output_tokens": 2})
        models = client.get("/v1/models")
    assert len(SDKChatCompletion.model_validate(chat.json()).choices) == 2
    assert len(SDKCompletion.model_validate(text.json()).choices) == 2
    assert SDKResponse.model_validate(response.json()).status in ("completed", "incomplete")
    assert [SDKModel.model_validate(card).id for card in models.json()["data"]] == ["lda", "after", "before"]


def _events(body: str) -> list[dict]:
    return [json.loads(line[len("data: "):]) for line in body.splitlines()
            if line.startswith("data: ") and line != "data: [DONE]"]


# Seed 11 runs the answer to max_tokens; seed 46 ends it with the stop token after 3 tokens (CI met
# such a turn unseeded, and the count of chunks then differs from the usage by the stop token).
@pytest.mark.parametrize("seed", [11, 46], ids=["length", "stop-token"])
def test_the_servers_streamed_chunks_validate_as_the_sdks_types(tokenizer, seed):
    """Every server-sent chunk parses as the SDK's chunk type; ``usage`` is present only when asked
    for (a null in every chunk, the counts in a last chunk without choices), as OpenAI streams it."""
    from fastapi.testclient import TestClient

    from lda_monitor.engine.pairs import TwoModelPair
    from lda_monitor.server import create_app
    from tests.tiny import tiny_llama

    app = create_app(TwoModelPair(tiny_llama(tokenizer, seed=1), tiny_llama(tokenizer, seed=2), tokenizer),
                     model_after="a", model_before="b")
    turn = [{"role": "user", "content": "tell me a story"}]
    asked = {"model": "lda", "messages": turn, "max_tokens": 4, "logprobs": True, "seed": seed}
    with TestClient(app) as client:
        chat = _events(client.post("/v1/chat/completions", json={
            **asked, "stream": True, "stream_options": {"include_usage": True}}).text)
        whole = client.post("/v1/chat/completions", json=asked).json()
        plain = _events(client.post("/v1/chat/completions", json={
            "model": "lda", "messages": turn, "max_tokens": 4, "stream": True}).text)
        text = _events(client.post("/v1/completions", json={
            "model": "after", "prompt": "hello", "max_tokens": 3, "logprobs": 1, "stream": True}).text)
        response = _events(client.post("/v1/responses", json={
            "model": "lda", "input": "hello", "max_output_tokens": 2, "stream": True}).text)
    chunks = [SDKChatCompletionChunk.model_validate(c) for c in chat]
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[-1].choices == []
    # Role chunk, a chunk per token, finish, usage. A turn ended by the model's stop token counts
    # that token in usage (it was sampled) but streams no chunk for it (it has no text), as the
    # non-streamed reply lists no logprob for it: the same seed gives the same reply either way.
    tokens = chunks[1:-2]
    stopped = chunks[-2].choices[0].finish_reason == "stop"
    assert stopped == (seed == 46)
    assert chunks[-1].usage.completion_tokens == len(tokens) + stopped == whole["usage"]["completion_tokens"]
    assert [t.choices[0].logprobs.content[0].token for t in tokens] == [
        t["token"] for t in whole["choices"][0]["logprobs"]["content"]]
    assert "".join(c.choices[0].delta.content or "" for c in chunks[:-1]) == whole["choices"][0]["message"]["content"]
    assert all("usage" in c and c["usage"] is None for c in chat[:-1])
    assert all("usage" not in c for c in plain) and plain[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    # The SDK types a completion chunk as its Completion, whose finish_reason is required: OpenAI's
    # chunks carry null until the last, so only the last validates strictly (the SDK does not validate).
    assert SDKCompletion.model_validate(text[-1]).choices[0].finish_reason in ("stop", "length")
    assert all(c["choices"][0]["finish_reason"] is None and c["choices"][0]["logprobs"]["tokens"] for c in text[:-1])
    events = [TypeAdapter(ResponseStreamEvent).validate_python(e) for e in response]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[-1].type in ("response.completed", "response.incomplete")
