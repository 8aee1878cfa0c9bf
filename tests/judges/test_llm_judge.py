"""The llm judge against an OpenAI-compatible server started on 127.0.0.1 with scripted replies."""

from __future__ import annotations

import json
import logging
import math
import time

import pytest

from lda_monitor.errors import UserInputError
from lda_monitor.judges import build_judge
from tests.scripted_server import ScriptedServer, dead_port, text_reply

SECRET = "sk-test-very-secret-value"


@pytest.fixture
def serve():
    servers = []

    def start(script):
        servers.append(ScriptedServer(script))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def logprob_reply(pairs):
    top = [{"token": t, "logprob": math.log(p)} for t, p in pairs]
    return {"choices": [{"message": {"content": pairs[0][0]},
                         "logprobs": {"content": [{"token": pairs[0][0], "top_logprobs": top}]}}]}


def judge_for(server, **kw):
    spec = {"type": "llm", "base_url": server.url, "model": "m", "prompt": "Q: {question} A: {answer}",
            "flag_below": 30, "timeout": 2, "max_retries": 2, "backoff": 0.01, **kw}
    return build_judge(spec)


def test_plain_scores_and_labels(serve):
    replies = {"good": "85", "bad": "Score: 10", "yes": "Yes.", "junk": "I cannot rate this."}
    server = serve(lambda body, n: (200, text_reply(replies[body["messages"][0]["content"].split("A: ")[1]]), 0))
    verdicts = judge_for(server)(["q"] * 4, ["good", "bad", "yes", "junk"])
    assert [v.flagged for v in verdicts] == [False, True, False, None]
    assert [v.score for v in verdicts[:3]] == [0.85, 0.10, 1.0]
    assert "no usable" in verdicts[3].error
    assert all(r["temperature"] == 0 and r["model"] == "m" for r in server.requests)


def test_top_logprob_weighted_score_matches_hand_computation(serve):
    pairs = [("20", 0.5), ("40", 0.2), ("hmm", 0.2), ("90", 0.1)]
    server = serve(lambda body, n: (200, logprob_reply(pairs), 0))
    (v,) = judge_for(server)(["q"], ["a"])
    expected = (0.5 * 20 + 0.2 * 40 + 0.1 * 90) / 0.8  # = 33.75, mass on numbers 0.8
    assert v.score == pytest.approx(expected / 100) and v.flagged is False
    low_mass = serve(lambda body, n: (200, logprob_reply([("sorry", 0.8), ("10", 0.2)]), 0))
    (u,) = judge_for(low_mass)(["q"], ["a"])
    assert u.flagged is None


def test_a_digit_by_digit_server_is_read_by_its_whole_number(serve):
    """Llama 2 / Mistral / Qwen servers spell "85" as "8", "5": the first position's weighted
    mean would be ~8 (an aligned answer flagged as misaligned); the reply's number counts."""
    def digits_reply(content, first):
        top = [{"token": t, "logprob": math.log(p)} for t, p in first]
        positions = [{"token": content[0], "top_logprobs": top}] + [{"token": c, "top_logprobs": []}
                                                                    for c in content[1:]]
        return {"choices": [{"message": {"content": content}, "logprobs": {"content": positions}}]}

    replies = {"good": digits_reply("85", [("8", 0.7), ("9", 0.2), ("7", 0.1)]),
               "best": digits_reply("100", [("1", 0.9), ("9", 0.1)]),
               "vague": digits_reply("50", [("I", 0.8), ("5", 0.2)])}
    server = serve(lambda body, n: (200, replies[body["messages"][0]["content"].split("A: ")[1]], 0))
    verdicts = judge_for(server)(["q"] * 3, ["good", "best", "vague"])
    assert [v.score for v in verdicts[:2]] == [0.85, 1.0] and [v.flagged for v in verdicts[:2]] == [False, False]
    assert verdicts[2].flagged is None, "under a quarter of the first position's mass on numbers"


def test_misalignment_rubric_needs_both_questions(serve):
    def script(body, n):
        content = body["messages"][0]["content"]
        return 200, text_reply("12" if "how well aligned" in content else "80"), 0

    server = serve(script)
    (v,) = build_judge({"type": "llm", "base_url": server.url, "model": "m", "rubric": "misalignment"})(["q"], ["a"])
    assert v.flagged is True and v.label == "aligned=12.0, coherent=80.0" and len(server.requests) == 2


def test_retries_on_429_and_5xx_then_success(serve):
    server = serve(lambda body, n: ((429, {}, 0) if n == 1 else (503, {}, 0) if n == 2 else (200, text_reply("5"), 0)))
    (v,) = judge_for(server)(["q"], ["a"])
    assert v.flagged is True and len(server.requests) == 3


def test_persistent_500_malformed_json_and_4xx_are_unscored(serve):
    always_500 = serve(lambda body, n: (500, {}, 0))
    (v,) = judge_for(always_500)(["q"], ["a"])
    assert v.flagged is None and "HTTP 500" in v.error and len(always_500.requests) == 3
    garbage = serve(lambda body, n: (200, b"{not json", 0))
    (g,) = judge_for(garbage)(["q"], ["a"])
    assert g.flagged is None and "malformed JSON" in g.error
    shape = serve(lambda body, n: (200, {"choices": []}, 0))
    assert judge_for(shape)(["q"], ["a"])[0].flagged is None
    bad_request = serve(lambda body, n: (400, {}, 0))
    (b,) = judge_for(bad_request)(["q"], ["a"])
    assert b.flagged is None and "not retried" in b.error and len(bad_request.requests) == 1


def test_hang_past_timeout_is_unscored(serve):
    server = serve(lambda body, n: (200, text_reply("5"), 1.0))
    start = time.perf_counter()
    (v,) = judge_for(server, timeout=0.2, max_retries=1)(["q"], ["a"])
    assert v.flagged is None and "Timeout" in v.error
    assert time.perf_counter() - start < 3


def test_concurrency_limit_and_request_cap(serve):
    server = serve(lambda body, n: (200, text_reply("50"), 0.05))
    verdicts = judge_for(server, max_concurrency=3, max_requests=10)(["q"] * 14, ["a"] * 14)
    assert server.max_in_flight <= 3 and len(server.requests) == 10
    capped = [v for v in verdicts if v.flagged is None]
    assert len(capped) == 4 and all("max_requests=10" in v.error for v in capped)


def test_api_key_is_sent_but_never_shown(serve, monkeypatch, caplog):
    monkeypatch.setenv("JUDGE_KEY", SECRET)
    server = serve(lambda body, n: (500, {"error": "boom"}, 0))
    caplog.set_level(logging.DEBUG)
    judge = judge_for(server, api_key_env="JUDGE_KEY")
    verdicts = judge(["q"], ["a"])
    assert server.auth == {f"Bearer {SECRET}"}
    shown = repr(judge) + json.dumps([v.to_dict() for v in verdicts]) + caplog.text + repr(vars(judge))
    assert SECRET not in shown
    monkeypatch.delenv("JUDGE_KEY")
    with pytest.raises(UserInputError, match=r"\$JUDGE_KEY"):
        judge_for(server, api_key_env="JUDGE_KEY")


def test_works_inside_a_running_event_loop(serve):
    import asyncio

    server = serve(lambda body, n: (200, text_reply("5"), 0))

    async def inside():
        return judge_for(server)(["q"], ["a"])

    assert asyncio.run(inside())[0].flagged is True


def test_a_dead_server_trips_the_circuit_breaker_after_three_connection_failures():
    from lda_monitor.judges.health import evaluation_scope

    judge = build_judge({"type": "llm", "base_url": f"http://127.0.0.1:{dead_port()}/v1", "model": "m",
                         "prompt": "Q: {question} A: {answer}", "flag_below": 30, "max_concurrency": 1})
    start = time.perf_counter()
    verdicts = judge(["q"] * 6, ["a"] * 6)
    assert time.perf_counter() - start < 5, "the default retry schedule alone would take ~15 s"
    assert all(v.flagged is None for v in verdicts)
    assert "ConnectError" in verdicts[0].error and "attempts" not in verdicts[0].error
    assert all("3 connection failures in a row" in v.error and "not called" in v.error for v in verdicts)
    with evaluation_scope(judge):  # one evaluation: the breaker stays open across its judge calls
        judge(["q"], ["a"])
        assert judge.breaker.is_open
        judge(["q"], ["a"])
        assert judge.breaker.is_open
    (v,) = build_judge({"type": "llm", "base_url": f"http://127.0.0.1:{dead_port()}/v1", "model": "m",
                        "prompt": "{question}{answer}", "flag_below": 30, "max_retries": 2, "backoff": 0.01,
                        "max_connect_failures": None})(["q"], ["a"])
    assert "after 3 attempts" in v.error  # breaker off: the item's full retry schedule


def test_the_breaker_names_its_threshold_even_with_requests_in_flight():
    """With max_concurrency 8 (the default) eight requests fail before the breaker is consulted;
    the message says what tripped it (3 in a row), not the 8 that had failed by then."""
    judge = build_judge({"type": "llm", "base_url": f"http://127.0.0.1:{dead_port()}/v1", "model": "m",
                         "prompt": "Q: {question} A: {answer}", "flag_below": 30})
    verdicts = judge(["q"] * 24, ["a"] * 24)
    assert judge.breaker.in_a_row >= 8, "the requests in flight all failed: the case this test is about"
    assert all(v.flagged is None for v in verdicts)
    assert {v.error for v in verdicts} == {
        f"llm: not called: 3 connection failures in a row tripped the circuit breaker (ConnectError talking to "
        f"{judge.base_url}); this judge is skipped for the rest of the evaluation and tried again at the next"}


def test_http_errors_do_not_trip_the_breaker(serve):
    server = serve(lambda body, n: (503, {}, 0) if n <= 4 else (200, text_reply("5"), 0))
    verdicts = judge_for(server, max_concurrency=1, max_retries=4)(["q"] * 2, ["a"] * 2)
    assert [v.flagged for v in verdicts] == [True, True], "a server that answers is never cut off"
