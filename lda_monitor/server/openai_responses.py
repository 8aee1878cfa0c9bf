"""``POST /v1/responses``: OpenAI's Responses API, text in and text out.

inspect_ai's ``openai/<name>`` provider sends model names it does not know to this API, so
serving it makes the plain ``inspect eval ... --model openai/lda --model-base-url .../v1`` work.
``input`` is a user message as text or a list of messages (text parts); ``instructions`` is a
system turn before them. The answer is one assistant message (``output``), with ``output_text``
(which SDKs compute anyway) and ``usage``; ``status`` is ``incomplete`` when the completion ran
into ``max_output_tokens``. Streaming sends the API's named events, ending with
``response.completed``. Like the other routes, ``alpha`` and ``seed`` are accepted as extras and
returned; alpha also as a query parameter or header (:func:`.openai_api.routed_alpha`), the ways
inspect_ai's Responses client can send it.
"""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter

from ..engine.sampling import STOP_MAX_TOKENS, Rollout, SamplingConfig
from .openai_api import RoutedAlpha, chat_messages, openai_config
from .openai_format import sse, token_counts
from .openai_replies import (
    ContentPartEvent,
    OutputItemEvent,
    Response,
    ResponseLifecycleEvent,
    TextDeltaEvent,
    TextDoneEvent,
)
from .openai_schema import ResponseRequest
from .state import State

router = APIRouter(prefix="/v1")


@router.post("/responses", response_model=Response)
async def create_response(req: ResponseRequest, state: State, alpha: RoutedAlpha):
    """The conversation rendered with the after model's chat template, answered by the side ``model`` names."""
    config = openai_config(state, req, routed=alpha)
    messages = chat_messages(state, req.messages())
    (rollout,) = await state.run([messages], config, seeded=req.seed is not None)
    response = response_object(req, config, rollout)
    return sse(response_events(response), done=False, named=True) if req.stream else response


def response_object(req: ResponseRequest, config: SamplingConfig, r: Rollout) -> dict:
    """OpenAI's ``response`` object for one completed rollout."""
    incomplete = r.stop_reason == STOP_MAX_TOKENS
    text = {"type": "output_text", "text": r.completion, "annotations": [], "logprobs": []}
    status = "incomplete" if incomplete else "completed"
    message = {"type": "message", "id": f"msg_{uuid.uuid4().hex}", "status": status, "role": "assistant",
               "content": [text]}
    prompt, completion = token_counts([r])
    return {
        "id": f"resp_{uuid.uuid4().hex}", "object": "response", "created_at": int(time.time()),
        "status": status, "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "instructions": req.instructions, "max_output_tokens": req.max_output_tokens, "model": req.model,
        "output": [message], "output_text": r.completion, "parallel_tool_calls": False,
        "previous_response_id": None, "reasoning": {"effort": None, "summary": None}, "store": False,
        "temperature": req.temperature, "text": {"format": {"type": "text"}}, "tool_choice": "none", "tools": [],
        "top_p": req.top_p, "truncation": "disabled", "user": None, "metadata": {},
        "usage": {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                  "output_tokens": completion,
                  "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": prompt + completion},
        "alpha": config.alpha, "seed": config.seed,
    }


# Each streamed event's model by its type (openai.types.responses.ResponseStreamEvent's members).
STREAM_EVENTS = {
    **dict.fromkeys(("response.created", "response.in_progress", "response.completed", "response.incomplete"),
                    ResponseLifecycleEvent),
    **dict.fromkeys(("response.output_item.added", "response.output_item.done"), OutputItemEvent),
    **dict.fromkeys(("response.content_part.added", "response.content_part.done"), ContentPartEvent),
    "response.output_text.delta": TextDeltaEvent,
    "response.output_text.done": TextDoneEvent,
}


def response_events(response: dict):
    """The Responses API's stream for a finished response: created, the message item and its one
    text part opened, the text as one delta, each closed, completed."""
    (message,) = response["output"]
    (part,) = message["content"]
    ids = {"item_id": message["id"], "output_index": 0, "content_index": 0}
    opening = {**response, "status": "in_progress", "output": [], "incomplete_details": None, "usage": None,
               "output_text": ""}
    events = [
        {"type": "response.created", "response": opening},
        {"type": "response.in_progress", "response": opening},
        {"type": "response.output_item.added", "output_index": 0,
         "item": {**message, "status": "in_progress", "content": []}},
        {"type": "response.content_part.added", **ids, "part": {**part, "text": ""}},
        {"type": "response.output_text.delta", **ids, "delta": part["text"], "logprobs": []},
        {"type": "response.output_text.done", **ids, "text": part["text"], "logprobs": []},
        {"type": "response.content_part.done", **ids, "part": part},
        {"type": "response.output_item.done", "output_index": 0, "item": message},
        {"type": "response.completed" if response["status"] == "completed" else "response.incomplete",
         "response": response},
    ]
    for n, event in enumerate(events):
        yield STREAM_EVENTS[event["type"]](**event, sequence_number=n)
