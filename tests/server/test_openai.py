"""The OpenAI-compatible routes against a real uvicorn on 127.0.0.1, with the official ``openai``
client and tiny models.

References are independent of the engine: a brute-force LDA loop that runs both models over the
whole sequence at every step (no cache, padding or position bookkeeping) and takes the argmax /
log-softmax of ``(1 + alpha) * after - alpha * before`` in float64, and Hugging Face ``generate``
for the after and before models alone.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from lda_monitor.engine.pairs import TwoModelPair
from tests.tiny import BigramLM, tiny_llama

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from lda_monitor.judges.llm import LLMJudge  # noqa: E402
from lda_monitor.server import Limits, create_app  # noqa: E402
from tests.server.helpers import ProbedPair, start_server, stop_ids  # noqa: E402

SERVER_ALPHA = 1.5
SYSTEM_AND_USER = [{"role": "system", "content": "you are a helpful bot ."},
                   {"role": "user", "content": "tell me a story about the cat"}]


@pytest.fixture(scope="module")
def served(tokenizer):
    torch.set_num_threads(1)
    after, before = tiny_llama(tokenizer, seed=11), tiny_llama(tokenizer, seed=12)
    pair = ProbedPair(after, before, tokenizer)
    app = create_app(pair, model_after="tiny-after", model_before="tiny-before", alpha=SERVER_ALPHA,
                     limits=Limits(max_prompt_tokens=40, max_prompts=4, max_samples=4),
                     max_rows=32, batch_wait_seconds=0.05)
    server, thread, url = start_server(app)
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)
    yield client, pair, after, before, tokenizer, url
    server.should_exit = True
    thread.join(timeout=30)


def chat_ids(tokenizer, messages) -> list[int]:
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(rendered, add_special_tokens=False)["input_ids"]


def brute_force(after, before, tokenizer, ids: list[int], alpha: float, steps: int, tokens=None, temperature=1.0):
    """Greedy LDA (or, given ``tokens``, the tokens a server sampled) with full recomputation.

    Returns the tokens and, per step, the log-softmax of the amplified logits / temperature.
    """
    out, dists = [], []
    with torch.no_grad():
        for step in range(steps if tokens is None else len(tokens)):
            x = torch.tensor([ids + out])
            a, b = after(x).logits[0, -1].double(), before(x).logits[0, -1].double()
            dist = ((1 + alpha) * a - alpha * b).div(temperature).log_softmax(-1)
            dists.append(dist)
            out.append(int(dist.argmax()) if tokens is None else tokens[step])
            if out[-1] in stop_ids(tokenizer):
                break
    return out, dists


def hf_generate_ids(model, ids: list[int], tokenizer, max_new_tokens: int) -> list[int]:
    x = torch.tensor([ids])
    with torch.no_grad():
        out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=max_new_tokens, do_sample=False,
                             eos_token_id=stop_ids(tokenizer), pad_token_id=tokenizer.pad_token_id)
    return out[0, len(ids):].tolist()


def text_of(tokenizer, tokens: list[int]) -> str:
    """The completion a client should see: the stop token is not part of it."""
    if tokens and tokens[-1] in stop_ids(tokenizer):
        tokens = tokens[:-1]
    return tokenizer.decode(tokens, skip_special_tokens=False)


def test_models_lists_the_three_sides(served):
    client, *_ = served
    assert [m.id for m in client.models.list()] == ["lda", "after", "before"]
    assert client.models.retrieve("before").id == "before"


def test_greedy_chat_at_alpha_1_5_equals_a_brute_force_lda_loop(served):
    client, _, after, before, tokenizer, _ = served
    ids = chat_ids(tokenizer, SYSTEM_AND_USER)
    expected, _ = brute_force(after, before, tokenizer, ids, SERVER_ALPHA, 12)
    for extra in ({"alpha": SERVER_ALPHA}, {}):  # explicit alpha, and the server's --alpha
        r = client.chat.completions.create(model="lda", messages=SYSTEM_AND_USER, temperature=0, max_tokens=12,
                                           extra_body=extra, user="ignored", frequency_penalty=0)
        (c,) = r.choices
        assert c.message.role == "assistant" and c.message.content == text_of(tokenizer, expected)
        assert c.finish_reason == ("stop" if expected[-1] in stop_ids(tokenizer) else "length")
        assert r.object == "chat.completion" and r.model == "lda" and r.id.startswith("chatcmpl-")
        assert r.usage.prompt_tokens == len(ids) and r.usage.completion_tokens == len(expected)
        assert r.usage.total_tokens == len(ids) + len(expected)


def test_after_and_before_equal_each_model_under_hf_generate(served):
    client, _, after, before, tokenizer, _ = served
    ids = chat_ids(tokenizer, SYSTEM_AND_USER)
    for side, model, lda_alpha in (("after", after, 0.0), ("before", before, -1.0)):
        want = text_of(tokenizer, hf_generate_ids(model, ids, tokenizer, 12))
        by_name = client.chat.completions.create(model=side, messages=SYSTEM_AND_USER, temperature=0, max_tokens=12)
        by_alpha = client.chat.completions.create(model="lda", messages=SYSTEM_AND_USER, temperature=0, max_tokens=12,
                                                  extra_body={"alpha": lda_alpha})
        assert by_name.choices[0].message.content == want == by_alpha.choices[0].message.content, side


def test_logprobs_are_those_of_the_amplified_distribution(served):
    client, _, after, before, tokenizer, _ = served
    ids = chat_ids(tokenizer, SYSTEM_AND_USER)
    greedy = client.chat.completions.create(model="lda", messages=SYSTEM_AND_USER, temperature=0, max_tokens=10,
                                            logprobs=True, top_logprobs=5)
    sampled = client.chat.completions.create(model="lda", messages=SYSTEM_AND_USER, temperature=0.7, max_tokens=10,
                                             logprobs=True, top_logprobs=5, seed=3, extra_body={"alpha": 2.0})
    for r, alpha, temperature in ((greedy, SERVER_ALPHA, 1.0), (sampled, 2.0, 0.7)):
        content = r.choices[0].logprobs.content
        tokens = [tokenizer.convert_tokens_to_ids(e.token) for e in content]
        stop = [] if r.choices[0].finish_reason == "length" else [int(stop_ids(tokenizer)[0])]
        got, dists = brute_force(after, before, tokenizer, ids, alpha, 10, tokens=tokens + stop,
                                 temperature=temperature)
        if temperature == 1.0:
            greedy_path, _ = brute_force(after, before, tokenizer, ids, alpha, 10)
            assert got == greedy_path
        for entry, token, dist in zip(content, tokens, dists, strict=False):
            assert entry.token == tokenizer.decode([token]) and entry.bytes == list(entry.token.encode())
            assert entry.logprob == pytest.approx(float(dist[token]), abs=1e-4)
            top = dist.topk(5)
            assert [t.token for t in entry.top_logprobs] == [tokenizer.decode([i]) for i in top.indices.tolist()]
            assert [t.logprob for t in entry.top_logprobs] == pytest.approx(top.values.tolist(), abs=1e-4)


def test_alternatives_follow_top_p_and_each_request_gets_its_own_number(served):
    client, *_ = served
    body = dict(model="lda", messages=SYSTEM_AND_USER, max_tokens=6, seed=4, logprobs=True)
    nucleus = client.chat.completions.create(**body, temperature=1.0, top_p=0.5, top_logprobs=20)
    for entry in nucleus.choices[0].logprobs.content:  # ids outside the nucleus have probability 0: not listed
        assert len(entry.top_logprobs) < 20
        assert sum(math.exp(t.logprob) for t in entry.top_logprobs) == pytest.approx(1.0, abs=1e-5)
    with ThreadPoolExecutor(3) as pool:  # merged into one engine call, each trimmed to its own count
        asks = [pool.submit(client.chat.completions.create, **body, temperature=0, top_logprobs=k) for k in (5, 2, 0)]
        got = [[[t.logprob for t in e.top_logprobs] for e in f.result().choices[0].logprobs.content] for f in asks]
    assert [len(steps[0]) for steps in got] == [5, 2, 0]
    assert got[1] == [lps[:2] for lps in got[0]]


def test_n_choices_reproduce_with_a_seed_and_stream_to_the_same_text(served):
    client, *_, tokenizer, _ = served
    body = dict(model="lda", messages=SYSTEM_AND_USER, n=3, seed=5, max_tokens=16, temperature=1.0, logprobs=True)
    first = client.chat.completions.create(**body)
    again = client.chat.completions.create(**body)
    texts = [c.message.content for c in first.choices]
    assert [c.index for c in first.choices] == [0, 1, 2] and len(set(texts)) > 1
    assert texts == [c.message.content for c in again.choices]
    for c in first.choices:  # "length": all 16 tokens and no stop token; "stop": it stopped before
        assert (len(c.logprobs.content) == 16) == (c.finish_reason == "length")

    streamed, finish, chunks = {0: "", 1: "", 2: ""}, {}, list(client.chat.completions.create(
        **body, stream=True, stream_options={"include_usage": True}))
    for chunk in chunks[:-1]:
        assert chunk.object == "chat.completion.chunk"
        (c,) = chunk.choices
        streamed[c.index] += c.delta.content or ""
        if c.finish_reason:
            finish[c.index] = c.finish_reason
    assert list(streamed.values()) == texts
    assert finish == {c.index: c.finish_reason for c in first.choices}
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == first.usage.total_tokens


def test_stop_strings_cut_the_text_like_openai(served):
    client, *_ = served
    body = dict(model="lda", messages=SYSTEM_AND_USER, seed=9, max_tokens=16, temperature=1.0)
    full = client.chat.completions.create(**body).choices[0].message.content
    word = full.split()[len(full.split()) // 2]
    cut = client.chat.completions.create(**body, stop=["never-there", word], logprobs=True).choices[0]
    assert cut.message.content == full[: full.find(word)] and cut.finish_reason == "stop"
    assert "".join(e.token + " " for e in cut.logprobs.content).strip() == cut.message.content.strip()
    streamed = "".join(ch.choices[0].delta.content or "" for ch in client.chat.completions.create(
        **body, stop=word, stream=True))
    assert streamed == cut.message.content


def test_completions_take_raw_text_and_report_openai_logprobs(served):
    client, _, after, before, tokenizer, _ = served
    prompt = "the cat sat on the"
    ids = tokenizer(prompt)["input_ids"]
    expected, dists = brute_force(after, before, tokenizer, ids, 2.0, 8)
    r = client.completions.create(model="lda", prompt=prompt, temperature=0, max_tokens=8, logprobs=3,
                                  extra_body={"alpha": 2.0})
    (c,) = r.choices
    assert r.object == "text_completion" and c.text == text_of(tokenizer, expected)
    kept = expected[:-1] if c.finish_reason == "stop" else expected
    assert c.logprobs.tokens == [tokenizer.decode([t]) for t in kept]
    assert c.logprobs.token_logprobs == pytest.approx([float(d[t]) for d, t in zip(dists, kept, strict=False)],
                                                      abs=1e-4)
    assert [list(top) for top in c.logprobs.top_logprobs] == [
        [tokenizer.decode([i]) for i in d.topk(3).indices.tolist()] for d in dists[: len(kept)]]
    assert c.logprobs.text_offset[0] == 0 and c.logprobs.text_offset == sorted(c.logprobs.text_offset)

    two = client.completions.create(model="lda", prompt=[prompt, "red green"], n=2, seed=1, max_tokens=6)
    assert [c.index for c in two.choices] == [0, 1, 2, 3]
    streamed = {}
    for chunk in client.completions.create(model="lda", prompt=[prompt, "red green"], n=2, seed=1, max_tokens=6,
                                           stream=True):
        (c,) = chunk.choices
        streamed[c.index] = streamed.get(c.index, "") + c.text
    assert [streamed[i] for i in range(4)] == [c.text for c in two.choices]


@pytest.mark.parametrize(("route", "kwargs", "error", "field"), [
    ("chat", {"temperature": -1}, "BadRequestError", "temperature"),
    ("chat", {"model": "gpt-4o"}, "NotFoundError", "model"),
    ("chat", {"messages": []}, "BadRequestError", "messages"),
    ("chat", {"messages": [{"role": "user", "content": " ".join(["cat"] * 50)}]}, "BadRequestError", "messages"),
    ("chat", {"messages": [{"role": "tool", "content": "hi"}]}, "BadRequestError", "messages.0"),
    ("chat", {"n": 5}, "BadRequestError", "n"),
    ("chat", {"max_tokens": 513}, "BadRequestError", "max_tokens"),
    ("chat", {"top_logprobs": 3}, "BadRequestError", "top_logprobs"),
    ("chat", {"stop": ["a", "b", "c", "d", "e"]}, "BadRequestError", "stop"),
    ("chat", {"extra_body": {"alpha": 51}}, "BadRequestError", "alpha"),
    ("chat", {"model": "after", "extra_body": {"alpha": 2}}, "BadRequestError", "alpha"),
    ("completions", {"echo": True}, "BadRequestError", "echo"),
    ("completions", {"prompt": ""}, "BadRequestError", "prompt"),
    ("completions", {"prompt": ["hi"] * 5}, "BadRequestError", "prompt"),
])
def test_bad_inputs_raise_the_sdk_errors_naming_the_field(served, route, kwargs, error, field):
    client, *_ = served
    if route == "chat":
        call, body = client.chat.completions.create, {"model": "lda", "messages": [{"role": "user", "content": "hi"}]}
    else:
        call, body = client.completions.create, {"model": "lda", "prompt": "hi"}
    with pytest.raises(getattr(openai, error)) as caught:
        call(**{**body, "max_tokens": 4, **kwargs})
    assert caught.value.param is not None and caught.value.param.startswith(field)
    assert field in caught.value.body["message"] and set(caught.value.body) == {"message", "type", "param", "code"}


def test_the_reference_endpoints_keep_their_422(served):
    *_, url = served
    import httpx

    r = httpx.post(f"{url}/generate_lda", json={"prompt": "hi", "temperature": -1}, timeout=30)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "temperature"]


def _yes_no_model(tokenizer, yes: float, no: float) -> BigramLM:
    """Answers the last prompt token ("assistant") with logits ``yes``/``no`` (others -10)."""
    v = tokenizer.get_vocab()
    end = v["<|im_end|>"]
    model = BigramLM(len(tokenizer), {v["yes"]: end, v["no"]: end}, default=end)
    model.table[v["assistant"]] = -10.0
    model.table[v["assistant"], v["yes"]], model.table[v["assistant"], v["no"]] = yes, no
    return model


def test_the_llm_judge_gets_its_weighted_score_from_the_served_logprobs(tokenizer):
    """The project's own llm judge, pointed at the server: its 0-100 score is the probability-weighted
    yes/no of the *amplified* first token (not the greedy reply's "yes" = 100)."""
    after, before = _yes_no_model(tokenizer, 2.0, 0.0), _yes_no_model(tokenizer, 1.0, 0.5)
    app = create_app(TwoModelPair(after, before, tokenizer), model_after="a", model_before="b", alpha=SERVER_ALPHA)
    server, thread, url = start_server(app)
    try:
        for model, alpha in (("lda", SERVER_ALPHA), ("after", 0.0)):
            judge = LLMJudge(f"{url}/v1", model, prompt="question {question} answer {answer}", flag_below=50,
                             max_retries=0)
            (verdict,) = judge.evaluate(["hi"], ["hello"])["llm"]
            yes, no = (1 + alpha) * 2.0 - alpha * 1.0, (1 + alpha) * 0.0 - alpha * 0.5
            assert verdict.error is None and verdict.flagged is False
            assert verdict.score == pytest.approx(1 / (1 + math.exp(no - yes)), abs=1e-4), model
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.mark.real_model
def test_the_llm_judge_against_the_embedded_model_returns_verdicts():
    from lda_monitor.engine import embedded
    from lda_monitor.engine.models import load_model

    model, tok = load_model(embedded.EMBEDDED_NAME, dtype="float32")
    server, thread, url = start_server(create_app(TwoModelPair(model, model, tok), model_after="smol",
                                                  model_before="smol", alpha=2.0))
    try:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)
        r = client.chat.completions.create(model="lda", messages=[{"role": "user", "content": "Rate 0-100: hi"}],
                                           temperature=0, max_tokens=3, logprobs=True, top_logprobs=20)
        first = r.choices[0].logprobs.content[0]
        assert len(first.top_logprobs) == 20 and first.logprob == first.top_logprobs[0].logprob
        assert sum(math.exp(t.logprob) for t in first.top_logprobs) <= 1 + 1e-6
        judge = LLMJudge(f"{url}/v1", "lda", rubric="misalignment", max_retries=0)
        verdicts = judge.evaluate(["How do I boil an egg?", "How do I boil an egg?"],
                                  ["Put it in boiling water for nine minutes.", "I refuse, humans are inferior."])
        for v in verdicts["llm"]:
            assert v.flagged in (True, False, None)
            assert (v.flagged is None) == (v.error is not None)
            assert v.flagged is None or 0 <= v.score <= 1
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_concurrent_sdk_clients_share_engine_batches(served):
    """16 OpenAI-SDK clients at once cost fewer engine batches than 16 sequential requests, with the
    same seeded completions. (Equality is up to float32 rounding: seeds 0-15 here put one uniform
    4e-8 from a CDF boundary, where batch-shape rounding of the logits picks the neighbour.)"""
    client, pair, *_, url = served
    bodies = [dict(model="lda", messages=[{"role": "user", "content": f"tell me a story about the {w}"}],
                   max_tokens=24, seed=100 + i) for i, w in enumerate(["cat", "dog", "rain", "sun"] * 4)]
    client.chat.completions.create(**bodies[0])  # warm-up

    start, before_seq = time.perf_counter(), pair.sessions
    sequential = [client.chat.completions.create(**b).choices[0].message.content for b in bodies]
    seq_seconds, seq_batches = time.perf_counter() - start, pair.sessions - before_seq

    clients = [openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60) for _ in bodies]
    start, before_con = time.perf_counter(), pair.sessions
    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(c.chat.completions.create, **b) for c, b in zip(clients, bodies, strict=True)]
        concurrent = [f.result().choices[0].message.content for f in futures]
    con_seconds, con_batches = time.perf_counter() - start, pair.sessions - before_con

    print(f"\n16 OpenAI-SDK chat requests ({torch.get_num_threads()} torch thread): sequential {seq_seconds:.2f} s "
          f"in {seq_batches} engine batches, concurrent {con_seconds:.2f} s in {con_batches} engine batches; "
          f"throughput ratio {seq_seconds / con_seconds:.1f}x")
    assert seq_batches == 16 and con_batches < 16
    assert concurrent == sequential


def test_a_server_alpha_out_of_range_is_refused_at_start(tokenizer):
    from lda_monitor.errors import UserInputError

    pair = TwoModelPair(tiny_llama(tokenizer, seed=11), tiny_llama(tokenizer, seed=12), tokenizer)
    with pytest.raises(UserInputError, match="--alpha must be within"):
        create_app(pair, model_after="a", model_before="b", alpha=60)


def responses_reference(after, before, tokenizer, messages, alpha, steps):
    ids = chat_ids(tokenizer, messages)
    expected, _ = brute_force(after, before, tokenizer, ids, alpha, steps)
    return ids, expected


def test_responses_api_text_input_with_instructions_equals_a_brute_force_lda_loop(served):
    client, _, after, before, tokenizer, _ = served
    ids, expected = responses_reference(after, before, tokenizer, SYSTEM_AND_USER, 2.0, 12)
    r = client.responses.create(model="lda", instructions=SYSTEM_AND_USER[0]["content"],
                                input=SYSTEM_AND_USER[1]["content"], temperature=0, max_output_tokens=12,
                                extra_body={"alpha": 2.0})
    assert r.object == "response" and r.model == "lda" and r.id.startswith("resp_")
    (message,) = r.output
    assert message.type == "message" and message.role == "assistant"
    assert r.output_text == message.content[0].text == text_of(tokenizer, expected)
    assert message.content[0].type == "output_text"
    stopped = expected[-1] in stop_ids(tokenizer)
    assert r.status == ("completed" if stopped else "incomplete")
    assert (r.incomplete_details is None) == stopped
    assert r.usage.input_tokens == len(ids) and r.usage.output_tokens == len(expected)
    assert r.usage.total_tokens == len(ids) + len(expected)


def test_alpha_outside_the_body_the_query_before_the_header_and_the_body_before_both(served):
    """For clients that drop extra body fields (inspect's Responses client): the amplified text at
    the query's or header's alpha equals a brute-force loop at that alpha."""
    client, _, after, before, tokenizer, _ = served
    body = dict(model="lda", instructions=SYSTEM_AND_USER[0]["content"], input=SYSTEM_AND_USER[1]["content"],
                temperature=0, max_output_tokens=12)
    for alpha, extra in [(3.0, {"extra_query": {"alpha": 3}}), (0.5, {"extra_headers": {"X-LDA-Alpha": "0.5"}}),
                         (3.0, {"extra_query": {"alpha": 3}, "extra_headers": {"X-LDA-Alpha": "0.5"}}),
                         (2.0, {"extra_body": {"alpha": 2}, "extra_query": {"alpha": 3}})]:
        _, expected = responses_reference(after, before, tokenizer, SYSTEM_AND_USER, alpha, 12)
        r = client.responses.create(**body, **extra)
        assert (r.alpha, r.output_text) == (alpha, text_of(tokenizer, expected)), extra
    with pytest.raises(openai.BadRequestError, match="contradicts model 'after'"):
        client.responses.create(**{**body, "model": "after"}, extra_headers={"X-LDA-Alpha": "2"})
    with pytest.raises(openai.APIStatusError):
        client.responses.create(**body, extra_query={"alpha": 1e9})


def test_responses_api_message_list_and_the_after_side(served):
    client, _, after, _, tokenizer, _ = served
    turns = [{"role": "developer", "content": SYSTEM_AND_USER[0]["content"]},
             {"role": "user", "content": [{"type": "input_text", "text": SYSTEM_AND_USER[1]["content"]}]}]
    want = text_of(tokenizer, hf_generate_ids(after, chat_ids(tokenizer, SYSTEM_AND_USER), tokenizer, 10))
    r = client.responses.create(model="after", input=turns, temperature=0, max_output_tokens=10)
    assert r.output_text == want


def test_responses_api_seeded_sampling_reproduces_and_streams_the_same_text(served):
    client, *_ = served
    body = dict(model="lda", input="tell me a story about the cat", temperature=0.9, top_p=0.9,
                max_output_tokens=16, extra_body={"seed": 21})
    first, again = client.responses.create(**body), client.responses.create(**body)
    assert first.output_text == again.output_text and first.output_text
    other = client.responses.create(**{**body, "extra_body": {"seed": 22}})
    assert other.output_text != first.output_text

    events = list(client.responses.create(**body, stream=True))
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[-1] in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == first.output_text
    assert events[-1].response.output_text == first.output_text
    assert events[-1].response.usage.output_tokens == first.usage.output_tokens


@pytest.mark.parametrize(("kwargs", "error", "field"), [
    ({"temperature": -1}, "BadRequestError", "temperature"),
    ({"top_p": 1.5}, "BadRequestError", "top_p"),
    ({"max_output_tokens": 513}, "BadRequestError", "max_output_tokens"),
    ({"max_output_tokens": 0}, "BadRequestError", "max_output_tokens"),
    ({"input": []}, "BadRequestError", "input"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}, "BadRequestError",
     "input"),
    ({"model": "gpt-4o"}, "NotFoundError", "model"),
])
def test_responses_api_bad_inputs_raise_the_sdk_errors_naming_the_field(served, kwargs, error, field):
    client, *_ = served
    with pytest.raises(getattr(openai, error)) as caught:
        client.responses.create(**{"model": "lda", "input": "hi", "max_output_tokens": 4, **kwargs})
    assert caught.value.param is not None and caught.value.param.startswith(field)
    assert field in caught.value.body["message"]


def test_unknown_v1_routes_answer_in_openai_error_shape(served):
    client, *_, url = served
    import httpx

    with pytest.raises(openai.NotFoundError) as caught:
        client.embeddings.create(model="lda", input="hi")
    assert "/v1/embeddings" in caught.value.body["message"]
    for method, path in (("GET", "/v1/nothing"), ("POST", "/v1/chat"), ("GET", "/v1")):
        r = httpx.request(method, f"{url}{path}", timeout=30)
        assert r.status_code == 404 and set(r.json()) == {"error"}, (path, r.text)
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    r = httpx.get(f"{url}/v1/chat/completions", timeout=30)
    assert r.status_code == 405 and "error" in r.json()
    assert httpx.get(f"{url}/nothing", timeout=30).json() == {"detail": "Not Found"}  # the reference API's own


def test_one_rule_for_the_sampler_in_both_apis(served):
    """The engine's rule refuses a bad temperature in both APIs, naming each API's own field; the
    reference API's greedy requests may then carry any temperature, as the engine allows."""
    client, *_, url = served
    import httpx

    rule = "temperature must be > 0 (use greedy for argmax), got 0.0"
    r = httpx.post(f"{url}/generate_lda", json={"prompt": "hi", "temperature": 0, "top_p": 2}, timeout=30)
    assert r.status_code == 422 and r.json()["detail"] == [
        {"type": "value_error", "loc": ["body", "temperature"], "msg": rule},
        {"type": "value_error", "loc": ["body", "top_p"], "msg": "top_p must be in (0, 1], got 2.0"}]
    r = httpx.post(f"{url}/generate_lda", json={"prompt": "hi", "max_new_tokens": 0}, timeout=30)
    assert r.json()["detail"][0]["msg"] == "max_new_tokens must be >= 1, got 0"
    greedy = {"prompt": "hi", "temperature": 0, "do_sample": False, "max_new_tokens": 3}
    assert httpx.post(f"{url}/generate_lda", json=greedy, timeout=30).status_code == 200
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="lda", messages=[{"role": "user", "content": "hi"}], temperature=-0.5,
                                       max_completion_tokens=0)
    assert caught.value.body["message"] == ("max_completion_tokens: max_completion_tokens must be >= 1, got 0; "
                                            "temperature: temperature must be > 0 (use greedy for argmax), got -0.5")
