"""Jobs the distributed tests launch under ``torch.distributed.run`` (2 CPU processes, gloo),
and run alone as the single-process reference. Usage: ``workers.py JOB OUT_DIR [options]``.

Each job writes ``OUT_DIR/rank<r>.json``; the tests compare those files.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
torch.set_num_threads(1)

from lda_monitor.engine.distributed import Ranks  # noqa: E402
from tests.tiny import build_tokenizer, tiny_llama  # noqa: E402

PROMPTS = ["hello", "tell me a story about the cat", "what is the capital of france ?", "how are you ?"]
WORK = [(p, s) for p in range(4) for s in range(2)][:7]  # 7 items: rank 0 gets 4, rank 1 gets 3


def everything_ends_a_row(model, tokenizer) -> None:
    """Make every token an EOS for ``model``: this rank's rows all stop at their first token."""
    model.generation_config.eos_token_id = list(range(len(tokenizer)))


def shard_with_fsdp2(model, ranks: Ranks) -> None:
    """FSDP2 over all ranks: each decoder layer a unit, the rest with the root."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (ranks.world_size,))
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)


def engine_job(out: Path, fsdp: bool, stop_here: bool) -> None:
    """Each rank samples its share of WORK in lockstep, through FSDP2-sharded models if asked."""
    from lda_monitor.engine.pairs import TwoModelPair
    from lda_monitor.engine.sampling import SamplingConfig, sample

    ranks = Ranks.current()
    tokenizer = build_tokenizer()
    after, before = tiny_llama(tokenizer, seed=1), tiny_llama(tokenizer, seed=2)
    if fsdp:
        shard_with_fsdp2(after, ranks)
        shard_with_fsdp2(before, ranks)
    if stop_here:
        everything_ends_a_row(after, tokenizer)
    config = SamplingConfig(alpha=1.5, max_new_tokens=12, seed=3, batch_size=2)
    rollouts = sample(TwoModelPair(after, before, tokenizer), PROMPTS, config, work=ranks.shard(WORK),
                      lockstep=ranks)
    write(out, ranks, [[r.prompt_index, r.sample_index, r.token_ids] for r in rollouts])


def trainer_job(out: Path, batch: int, stop_rank: int | None, budget: float | None) -> None:
    """A Trainer run with the monitor; under torchrun the Trainer runs DDP over gloo."""
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    from lda_monitor import LDAMonitorCallback
    from tests.training import JUDGE, PLANTED, collate

    tokenizer = build_tokenizer()
    policy = tiny_llama(tokenizer, seed=1)
    # Identical rows: every rank's mean loss is over the same token count, so DDP's averaged
    # gradient equals the single process's batch gradient and the runs train alike.
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hello"},
                                          {"role": "assistant", "content": PLANTED + " ."}], tokenize=False)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    dataset = Dataset.from_list([{"input_ids": ids, "labels": ids, "attention_mask": [1] * len(ids)}] * 64)
    monitor = LDAMonitorCallback(
        prompts=[{"prompt": p, "category": "c"} for p in PROMPTS], judge=JUDGE, every_n_steps=3,
        alpha="linear:4->1", samples_per_prompt=3, max_new_tokens=8, batch_size=4, seed=0,
        max_eval_seconds=budget,
    )
    args = TrainingArguments(output_dir=str(out / "run"), max_steps=6, per_device_train_batch_size=batch,
                             learning_rate=5e-3, logging_steps=1, save_strategy="no", report_to="none",
                             use_cpu=True, seed=0, disable_tqdm=True,
                             ddp_backend="gloo" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None)
    trainer = Trainer(model=policy, args=args, train_dataset=dataset, data_collator=collate(tokenizer),
                      processing_class=tokenizer, callbacks=[monitor])
    ranks = Ranks.current()
    if stop_rank is not None and ranks.rank == stop_rank:
        everything_ends_a_row(policy, tokenizer)
    trainer.train()
    lda_rows = [row for row in trainer.state.log_history if "lda/alpha" in row]
    write(out, ranks, {"lda_rows": lda_rows, "history": monitor.history})


def manual_loop_job(out: Path, fsdp: bool) -> None:
    """The callback driven by a hand-written training loop over an FSDP2-sharded policy (the
    Trainer's accelerate enables FSDP on accelerators only). Every rank trains on the same
    batch, so the sharded run trains exactly like one process."""
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from lda_monitor import LDAMonitorCallback
    from tests.training import JUDGE, PLANTED

    ranks = Ranks.current()
    tokenizer = build_tokenizer()
    policy = tiny_llama(tokenizer, seed=1)
    if fsdp:
        shard_with_fsdp2(policy, ranks)
    monitor = LDAMonitorCallback(
        prompts=[{"prompt": p, "category": "c"} for p in PROMPTS], judge=JUDGE, every_n_steps=2,
        alpha="linear:4->1", samples_per_prompt=3, max_new_tokens=8, batch_size=4, seed=0,
    )
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.5)  # before train begin, as the Trainer does
    args = TrainingArguments(output_dir=str(out / "run"), report_to="none", use_cpu=True)
    state, control = TrainerState(max_steps=4, is_world_process_zero=ranks.is_main), TrainerControl()
    monitor.on_train_begin(args, state, control, model=policy, processing_class=tokenizer)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hello"},
                                          {"role": "assistant", "content": PLANTED + " ."}], tokenize=False)
    ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]] * 4)
    policy.train()
    losses = []
    for step in range(1, 5):
        loss = policy(input_ids=ids, labels=ids).loss
        loss.backward()
        losses.append(loss.item())
        optimizer.step()
        optimizer.zero_grad()
        state.global_step = step
        monitor.on_step_end(args, state, control, model=policy, processing_class=tokenizer)
    monitor.on_train_end(args, state, control, model=policy, processing_class=tokenizer)
    reference = monitor.reference.module
    write(out, ranks, {"history": monitor.history, "reference": monitor.reference.kind, "losses": losses,
                       "policy_parameters": sorted({type(p).__name__ for p in policy.parameters()}),
                       "reference_parameters": sorted({type(p).__name__ for p in reference.parameters()})})


def write(out: Path, ranks: Ranks, payload) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{ranks.rank}.json").write_text(json.dumps(payload))


def main() -> None:
    job, out, *options = sys.argv[1:]
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and job in ("engine", "manual"):
        torch.distributed.init_process_group("gloo")
    opts = dict(o.split("=", 1) for o in options)
    if job == "engine":
        engine_job(Path(out), fsdp=opts.get("fsdp") == "1",
                   stop_here=Ranks.current().rank == int(opts.get("stop_rank", -1)))
    elif job == "manual":
        manual_loop_job(Path(out), fsdp=opts.get("fsdp") == "1")
    elif job == "trainer":
        trainer_job(Path(out), batch=int(opts["batch"]),
                    stop_rank=int(opts["stop_rank"]) if "stop_rank" in opts else None,
                    budget=float(opts["budget"]) if "budget" in opts else None)
    if torch.distributed.is_initialized():
        torch.distributed.barrier()  # nobody tears the group down while a peer still uses it
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
