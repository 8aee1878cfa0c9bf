"""The monitor's engine and callback across 2 CPU processes (gloo), against single-process runs.

Rank 1 can be made to stop every row at its first token (every token counts as EOS there):
without lockstep decoding that rank would leave the loop early and, under FSDP, the other
rank's next forward would wait for it forever. Every launch is bounded by a timeout.
"""

from __future__ import annotations

import json

import pytest

from lda_monitor.engine.distributed import Ranks
from lda_monitor.engine.pairs import TwoModelPair
from lda_monitor.engine.sampling import SamplingConfig, sample
from tests.distributed.launch import WORKERS, single, torchrun
from tests.distributed.workers import PROMPTS, WORK
from tests.tiny import tiny_llama

pytestmark = pytest.mark.distributed

TIMING = ("lda/eval_seconds", "lda/tokens_per_second", "lda/monitor_time_share", "lda/discovery_seconds")


def reference_rows(tokenizer, work) -> list:
    """Single process, unsharded models, the worker's settings."""
    pair = TwoModelPair(tiny_llama(tokenizer, seed=1), tiny_llama(tokenizer, seed=2), tokenizer)
    config = SamplingConfig(alpha=1.5, max_new_tokens=12, seed=3, batch_size=2)
    return [[r.prompt_index, r.sample_index, r.token_ids] for r in sample(pair, PROMPTS, config, work=work)]


def fsdp_on_cpu() -> None:
    try:
        from torch.distributed.fsdp import fully_shard  # noqa: F401
    except ImportError:
        pytest.skip("this torch has no FSDP2 (torch.distributed.fsdp.fully_shard)")


@pytest.mark.parametrize("stop_rank", [None, 1])
def test_fsdp_sharded_decoding_in_lockstep(tokenizer, tmp_path, stop_rank):
    """Models sharded with FSDP2: every forward is a collective. Rank 0 has one batch more than
    rank 1 (4 vs 3 work items, batches of 2), and optionally rank 1's rows all stop at once."""
    fsdp_on_cpu()
    options = ["fsdp=1"] + ([f"stop_rank={stop_rank}"] if stop_rank is not None else [])
    torchrun(str(WORKERS), "engine", str(tmp_path), *options)
    rank0 = json.loads((tmp_path / "rank0.json").read_text())
    rank1 = json.loads((tmp_path / "rank1.json").read_text())
    assert rank0 == reference_rows(tokenizer, Ranks(0, 2).shard(WORK))
    if stop_rank is None:
        assert rank1 == reference_rows(tokenizer, Ranks(1, 2).shard(WORK))
    else:
        assert [len(ids) for _, _, ids in rank1] == [1, 1, 1]
        assert max(len(ids) for _, _, ids in rank0) > 1


def records_by_position(run_dir) -> dict:
    from lda_monitor.core.records import RECORDS_FILE, read_records

    return list(read_records(run_dir / "lda_monitor" / RECORDS_FILE))


def test_ddp_trainer_metrics_equal_the_single_process_run(tmp_path):
    """DDP with 2 x 4 rows per step against one process with 8 rows (identical rows, so the
    two train alike): every metric equal up to floating point, logged and written by rank 0 only."""
    torchrun(str(WORKERS), "trainer", str(tmp_path / "ddp"), "batch=4")
    single(str(WORKERS), "trainer", str(tmp_path / "one"), "batch=8")
    ddp0 = json.loads((tmp_path / "ddp" / "rank0.json").read_text())
    ddp1 = json.loads((tmp_path / "ddp" / "rank1.json").read_text())
    one = json.loads((tmp_path / "one" / "rank0.json").read_text())
    assert [r["step"] for r in one["history"]] == [r["step"] for r in ddp0["history"]] == [0, 3, 6]
    assert max(r["lda/flagged"] for r in one["history"]) > 0, "the planted phrase must show up"
    for mine, theirs in zip(ddp0["history"], one["history"], strict=True):
        assert set(mine) == set(theirs)
        for key, value in theirs.items():
            if key not in TIMING:
                assert mine[key] == pytest.approx(value, rel=1e-5, abs=1e-9), key
    assert len(ddp0["lda_rows"]) == 3 and ddp1["lda_rows"] == [], "rank 0 alone logs"
    records = records_by_position(tmp_path / "ddp" / "run")
    # amplified and plain at each of the 3 evaluations (the natural-rate ladder is off by default)
    assert len(records) == 3 * (12 + 12)
    assert len({(r.step, r.kind, r.alpha, r.prompt_index, r.sample_index) for r in records}) == len(records)
    reference = records_by_position(tmp_path / "one" / "run")
    assert [r.token_ids for r in records] == [r.token_ids for r in reference]


def test_ddp_no_hang_when_one_ranks_rows_all_stop_at_the_first_token(tmp_path):
    torchrun(str(WORKERS), "trainer", str(tmp_path), "batch=4", "stop_rank=1", timeout=180)
    records = records_by_position(tmp_path / "run")
    for step in (0, 3, 6):
        for kind in ("amplified", "plain"):
            rows = [r for r in records if r.step == step and r.kind == kind]
            assert len(rows) == 12
            assert all(r.num_tokens == 1 for r in rows[1::2]), "rank 1's share (odd positions) stopped at once"


def test_ddp_time_budget_skips_the_same_prompts_on_every_rank(tmp_path):
    torchrun(str(WORKERS), "trainer", str(tmp_path), "batch=4", "stop_rank=1", "budget=1e-9", timeout=180)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text())["history"] for r in (0, 1)]
    for row0, row1 in zip(*ranks, strict=True):
        assert row0["lda/skipped_rollouts"] == row1["lda/skipped_rollouts"] > 0
        assert row0["lda/n"] == row1["lda/n"] == 3  # the first chunk (one prompt) only


def test_fsdp2_policy_with_a_sharded_snapshot_equals_the_single_process_run(tmp_path):
    """A training loop over an FSDP2-sharded policy (accelerate's Trainer turns FSDP on for
    accelerators only, so the loop is hand-written). Full fine-tuning: the reference snapshot is
    sharded like the policy, the policy is left sharded after each evaluation, and training and
    metrics match one process training the unsharded model on the same batch."""
    fsdp_on_cpu()
    torchrun(str(WORKERS), "manual", str(tmp_path / "fsdp"), "fsdp=1")
    single(str(WORKERS), "manual", str(tmp_path / "one"))
    fsdp, one = (json.loads((tmp_path / d / "rank0.json").read_text()) for d in ("fsdp", "one"))
    assert fsdp["reference"] == one["reference"] == "weight-snapshot"
    assert fsdp["policy_parameters"] == fsdp["reference_parameters"] == ["DTensor"], "sharded, not copied whole"
    assert fsdp["losses"] == pytest.approx(one["losses"], rel=1e-5)
    assert [r["step"] for r in fsdp["history"]] == [r["step"] for r in one["history"]] == [0, 2, 4]
    for mine, theirs in zip(fsdp["history"], one["history"], strict=True):
        assert mine["lda/errors"] == 0
        for key, value in theirs.items():
            if key not in TIMING:
                assert mine[key] == pytest.approx(value, rel=1e-5, abs=1e-9), key
