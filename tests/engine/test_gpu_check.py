"""The GPU check runs in CI at tiny size on the CPU (the same code as on a GPU)."""

from __future__ import annotations

import json

import pytest

from lda_monitor.demo import gpu_check


def test_gpu_check_tiny_runs_every_part(tmp_path):
    pytest.importorskip("trl")
    assert gpu_check.main(["--tiny", "--json-out", str(tmp_path / "report.json")]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["tiny"] and report["device"] == "cpu"
    fp32 = report["correctness"]["float32"]
    assert fp32["equal"] == fp32["rows"] == len(gpu_check.PROMPTS)
    assert report["correctness"]["bfloat16"]["rows"] == len(gpu_check.PROMPTS)
    assert report["correctness"]["transforms"]["cases"] == 18
    for preset in ("llama-1b", "llama-8b"):
        speeds = report["bench"][preset]["tokens_per_second"]
        assert set(speeds) == {"generate", "lda-doubled", "lda-two-pass"} and all(v > 0 for v in speeds.values())
        assert all(v > 0 for v in report["bench"][preset]["peak_memory_bytes"].values())
    assert report["training"]["evaluated_steps"] == [0, 2, 4]


def test_greedy_check_fails_on_a_wrong_engine(monkeypatch):
    """The brute-force comparison can fail: an engine that ignores the before model is caught."""
    import torch

    from lda_monitor.engine import sampling

    monkeypatch.setattr(sampling, "combine", lambda after, before, alpha: after.float())
    tokenizer = gpu_check.byte_tokenizer()
    after = gpu_check.small_llama(tokenizer, 1, tiny=True, dtype=torch.float32, device="cpu")
    before = gpu_check.small_llama(tokenizer, 2, tiny=True, dtype=torch.float32, device="cpu")
    with pytest.raises(AssertionError, match="brute force"):
        gpu_check.check_greedy(after, before, tokenizer, alpha=1.5, max_new_tokens=8, near_tie=1e-3)
