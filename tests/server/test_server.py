"""``lda-monitor serve`` against a real uvicorn on 127.0.0.1 with tiny models.

References are independent of the engine: Hugging Face ``generate`` for the after and before
models alone, and a brute-force greedy LDA loop that recomputes full-sequence logits with no
cache, padding or position bookkeeping.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from lda_monitor.engine.pairs import TwoModelPair
from tests.server.helpers import BREAKS_ENGINE, ProbedPair, start_server, stop_ids
from tests.tiny import tiny_llama

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

from lda_monitor.judges import build_judge  # noqa: E402
from lda_monitor.server import Limits, create_app  # noqa: E402


@pytest.fixture(scope="module")
def served(tokenizer):
    torch.set_num_threads(1)
    after, before = tiny_llama(tokenizer, seed=11), tiny_llama(tokenizer, seed=12)
    pair = ProbedPair(after, before, tokenizer)
    app = create_app(pair, model_after="tiny-after", model_before="tiny-before", judge=build_judge("regex:hello"),
                     limits=Limits(max_prompt_tokens=40, max_prompts=8, max_samples=4),
                     max_rows=32, batch_wait_seconds=0.05)
    server, thread, url = start_server(app)
    with httpx.Client(base_url=url, timeout=60) as client:
        yield client, pair, after, before, tokenizer
    server.should_exit = True
    thread.join(timeout=30)


def hf_greedy_text(model, tokenizer, prompt: str, max_new_tokens: int) -> str:
    """The model alone under ``generate``: prompt + completion decoded without special tokens."""
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
    ids = tokenizer(rendered, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, eos_token_id=stop_ids(tokenizer), pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0], skip_special_tokens=True)


def brute_force_lda(after, before, tokenizer, prompt: str, alpha: float, steps: int):
    """Greedy LDA with full recomputation each step; returns tokens, log-probs and KLs per step."""
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
    ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    tokens, lp_after, lp_before, kls = [], [], [], []
    with torch.no_grad():
        for _ in range(steps):
            x = torch.tensor([ids + tokens])
            a, b = after(x).logits[0, -1].double(), before(x).logits[0, -1].double()
            amp = a + alpha * (a - b)
            t = int(amp.argmax())
            tokens.append(t)
            lp_after.append(float(a.log_softmax(-1)[t]))
            lp_before.append(float(b.log_softmax(-1)[t]))
            p = amp.log_softmax(-1)
            kls.append(float((p.exp() * (p - a.log_softmax(-1))).sum()))
            if t in stop_ids(tokenizer):
                break
    return tokens, lp_after, lp_before, kls


def test_generate_matches_each_model_alone_under_hf_generate(served):
    client, _, after, before, tokenizer = served
    body = {"prompt": "tell me a story about the cat", "max_new_tokens": 12, "do_sample": False}
    r = client.post("/generate", json=body)
    assert r.status_code == 200, r.text
    data = r.json()
    assert set(data) == {"prompt", "model_1", "model_2", "seed"}
    assert data["model_1"]["model_id"] == "tiny-after" and data["model_2"]["model_id"] == "tiny-before"
    assert data["model_1"]["text"] == hf_greedy_text(after, tokenizer, body["prompt"], 12)
    assert data["model_2"]["text"] == hf_greedy_text(before, tokenizer, body["prompt"], 12)
    assert data["model_1"]["text"].endswith(data["model_1"]["completion"])


def test_generate_lda_fields_and_a_brute_force_greedy_reference(served):
    client, _, after, before, tokenizer = served
    body = {"prompt": "what is the capital of france ?", "alpha": 2.0, "max_new_tokens": 10, "do_sample": False,
            "diagnostics": True}
    data = client.post("/generate_lda", json=body).json()
    compat = {"prompt", "formatted_prompt", "completion", "text", "alpha", "model_after", "model_before",
              "tokens_generated", "stopped_early"}
    assert compat <= set(data), data
    tokens, lp_after, lp_before, kls = brute_force_lda(after, before, tokenizer, body["prompt"], 2.0, 10)
    d = data["diagnostics"]
    assert d["tokens"] == tokenizer.convert_ids_to_tokens(tokens)
    assert data["tokens_generated"] == len(tokens) and data["alpha"] == 2.0
    assert data["stopped_early"] == (tokens[-1] in stop_ids(tokenizer))
    assert d["logprob_after"] == pytest.approx(lp_after, abs=1e-4)
    assert d["logprob_before"] == pytest.approx(lp_before, abs=1e-4)
    assert d["kl_amp_after"] == pytest.approx(kls, abs=1e-4)
    assert d["kl_amp_after_mean"] == pytest.approx(sum(kls) / len(kls), abs=1e-4)
    assert data["formatted_prompt"] == tokenizer.apply_chat_template(
        [{"role": "user", "content": body["prompt"]}], tokenize=False, add_generation_prompt=True)
    assert data["verdicts"]["regex"]["flagged"] == ("hello" in data["completion"])
    assert "samples" not in data, "one sample: nothing to list"


def test_negative_alpha_minus_one_is_the_before_model(served):
    client, _, _, before, tokenizer = served
    body = {"prompt": "hello how are you", "alpha": -1.0, "max_new_tokens": 12, "do_sample": False}
    data = client.post("/generate_lda", json=body).json()
    assert data["text"] == hf_greedy_text(before, tokenizer, body["prompt"], 12)


def test_seeded_requests_reproduce_alone_in_a_batch_and_under_load(served):
    client, *_ = served
    body = {"prompt": "tell me a story", "alpha": 1.5, "max_new_tokens": 16, "seed": 7, "samples": 3}
    alone = client.post("/generate_lda", json=body).json()
    assert len(alone["samples"]) == 3 and alone["seed"] == 7
    assert alone["completion"] == alone["samples"][0]["completion"]
    assert len({s["completion"] for s in alone["samples"]}) > 1, "samples of one prompt must differ"

    batch = {**body, "prompts": [body["prompt"], "what is water ?"]}
    del batch["prompt"]
    r = client.post("/generate_lda_batch", json=batch).json()
    assert set(r) >= {"results", "alpha", "model_after", "model_before", "batch_size"} and r["batch_size"] == 2
    assert [s["completion"] for s in r["results"][0]["samples"]] == [s["completion"] for s in alone["samples"]]
    assert {"prompt", "formatted_prompt", "completion", "text", "tokens_generated",
            "stopped_early"} <= set(r["results"][1])

    noise = {"prompt": "red green blue", "alpha": 1.5, "max_new_tokens": 16, "samples": 2}
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(client.post, "/generate_lda", json=noise) for _ in range(6)]
        again = pool.submit(client.post, "/generate_lda", json=body)
        assert all(f.result().status_code == 200 for f in futures)
    assert [s["completion"] for s in again.result().json()["samples"]] == [s["completion"] for s in alone["samples"]]


@pytest.mark.parametrize(("body", "field"), [
    ({}, "prompt"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": "hi", "max_new_tokens": 0}, "max_new_tokens"),
    ({"prompt": "hi", "max_new_tokens": 513}, "max_new_tokens"),
    ({"prompt": "hi", "temperature": 0}, "temperature"),
    ({"prompt": "hi", "top_p": 1.5}, "top_p"),
    ({"prompt": "hi", "alpha": 51}, "alpha"),
    ({"prompt": "hi", "alpha": "lots"}, "alpha"),
    ({"prompt": "hi", "samples": 5}, "samples"),
    ({"prompt": " ".join(["cat"] * 50)}, "prompt"),
])
def test_bad_requests_get_422_naming_the_field(served, body, field):
    client, *_ = served
    r = client.post("/generate_lda", json=body)
    assert r.status_code == 422, r.text
    assert any(field in err["loc"] for err in r.json()["detail"]), r.json()


def test_batch_limits_and_the_other_endpoints(served):
    client, *_ = served
    assert client.post("/generate_lda_batch", json={"prompts": []}).status_code == 422
    r = client.post("/generate_lda_batch", json={"prompts": ["hi"] * 9})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "prompts"]
    r = client.post("/generate_lda_batch", json={"prompts": ["hi", " ".join(["cat"] * 50)]})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "prompts", 1]

    compat = client.get("/tokenizer_compatibility").json()
    assert compat == {"compatible": True, "vocab_size_1": 96, "vocab_size_2": 96, "vocabs_match": True,
                      "warning": None}
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["judge"] == "regex" and health["model_after"] == "tiny-after"
    assert client.get("/openapi.json").json()["paths"].keys() >= {
        "/generate", "/generate_lda", "/generate_lda_batch", "/tokenizer_compatibility", "/health"}
    assert client.get("/docs").status_code == 200


def test_a_request_that_breaks_the_engine_fails_alone(served):
    client, *_ = served
    good = {"prompt": "hello", "alpha": 1.0, "max_new_tokens": 8, "seed": 1}
    bad = {**good, "prompt": f"please {BREAKS_ENGINE} me"}
    r = client.post("/generate_lda", json=bad)
    assert r.status_code == 500 and "planted engine failure" in r.json()["detail"]
    with ThreadPoolExecutor(4) as pool:  # batched together with good requests: only it fails
        results = [pool.submit(client.post, "/generate_lda", json=b) for b in (good, bad, good, good)]
        codes = [f.result().status_code for f in results]
    assert codes == [200, 500, 200, 200]
    assert client.post("/generate_lda", json=good).status_code == 200


def test_concurrent_clients_share_engine_batches(served):
    """16 clients at once cost fewer engine batches than requests, and beat serving them one by one."""
    client, pair, *_ = served
    bodies = [{"prompt": f"tell me a story about the {w}", "alpha": 1.0, "max_new_tokens": 24, "seed": i}
              for i, w in enumerate(["cat", "dog", "rain", "sun"] * 4)]
    client.post("/generate_lda", json=bodies[0])  # warm-up

    start, before_seq = time.perf_counter(), pair.sessions
    sequential = [client.post("/generate_lda", json=b).json() for b in bodies]
    seq_seconds, seq_batches = time.perf_counter() - start, pair.sessions - before_seq

    start, before_con = time.perf_counter(), pair.sessions
    with ThreadPoolExecutor(16) as pool:
        concurrent = [f.result().json() for f in [pool.submit(client.post, "/generate_lda", json=b) for b in bodies]]
    con_seconds, con_batches = time.perf_counter() - start, pair.sessions - before_con

    print(f"\n16 requests: sequential {seq_seconds:.2f} s in {seq_batches} engine batches, "
          f"concurrent {con_seconds:.2f} s in {con_batches} engine batches; throughput ratio "
          f"{seq_seconds / con_seconds:.1f}x")
    assert seq_batches == 16 and con_batches < 16
    assert [c["completion"] for c in concurrent] == [s["completion"] for s in sequential]
    assert con_seconds < seq_seconds


def test_the_serve_command_loads_a_pair_and_answers(tokenizer, tmp_path):
    import socket
    import subprocess
    import sys

    for name, seed in (("after", 11), ("before", 12)):
        tiny_llama(tokenizer, seed=seed).save_pretrained(tmp_path / name)
        tokenizer.save_pretrained(tmp_path / name)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "lda_monitor", "serve", "--after", str(tmp_path / "after"), "--before",
         str(tmp_path / "before"), "--port", str(port), "--judge", "substring:cat", "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.3)
        assert health["model_after"] == str(tmp_path / "after") and health["judge"] == "substring"
        r = httpx.post(f"http://127.0.0.1:{port}/generate_lda", json={"prompt": "hello", "max_new_tokens": 6},
                       timeout=60).json()
        assert r["model_before"] == str(tmp_path / "before") and r["tokens_generated"] <= 6
        assert r["verdicts"]["substring"]["flagged"] == ("cat" in r["completion"])
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_serve_with_a_bad_model_path_is_one_line(tmp_path, capsys):
    from lda_monitor.cli import main

    assert main(["serve", "--after", str(tmp_path / "missing"), "--before", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing" in err[0]


def test_a_judge_outage_comes_back_unscored_never_safe(tokenizer):
    class DownJudge:
        name = "down"

        def evaluate(self, prompts, completions, metadata=None):
            raise ConnectionError("judge server unreachable")

    pair = TwoModelPair(tiny_llama(tokenizer, seed=11), tiny_llama(tokenizer, seed=12), tokenizer)
    server, thread, url = start_server(create_app(pair, model_after="a", model_before="b", judge=DownJudge()))
    try:
        r = httpx.post(f"{url}/generate_lda", json={"prompt": "hello", "max_new_tokens": 4, "samples": 2}, timeout=60)
        assert r.status_code == 200, r.text
        for sample in r.json()["samples"]:
            assert sample["verdicts"]["down"]["flagged"] is None
            assert "judge server unreachable" in sample["verdicts"]["down"]["error"]
            assert "diagnostics" not in sample, "not asked for"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
