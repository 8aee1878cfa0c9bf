"""The reply models of the OpenAI routes hold what the openai SDK's own types require, and a reply
of ours validates as the SDK's type (the SDK is the independent reference for the shapes)."""

from __future__ import annotations

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")

from openai.types import Completion as SDKCompletion  # noqa: E402
from openai.types import CompletionChoice as SDKCompletionChoice  # noqa: E402
from openai.types import CompletionUsage  # noqa: E402
from openai.types import Model as SDKModel  # noqa: E402
from openai.types.chat import ChatCompletion as SDKChatCompletion  # noqa: E402
from openai.types.chat import ChatCompletionTokenLogprob  # noqa: E402
from openai.types.chat.chat_completion import Choice as SDKChatChoice  # noqa: E402

from lda_monitor.server import openai_replies as ours  # noqa: E402

PAIRS = [(ours.ModelCard, SDKModel), (ours.Usage, CompletionUsage), (ours.TokenLogprob, ChatCompletionTokenLogprob),
         (ours.ChatChoice, SDKChatChoice), (ours.ChatCompletion, SDKChatCompletion),
         (ours.CompletionChoice, SDKCompletionChoice), (ours.Completion, SDKCompletion)]


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
