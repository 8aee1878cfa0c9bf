"""The trainer a detection scenario describes: LoRA SFT on made data, or LoRA GRPO on a reward.

SFT reuses the demo's recipe (the base model's own answers to benign questions, plus a small
share of rows carrying the behaviour: :func:`lda_monitor.demo.data.build_training_rows`) and the
demo's trainer (:func:`lda_monitor.demo.run.lora_trainer`). GRPO uses TRL's ``GRPOTrainer`` with
:func:`keyword_brevity_reward`: the intended answer is a sentence on the topic that uses the
keyword; the reward checks the keyword and prefers short answers, so a bare keyword (no sentence
at all) earns the most, and GRPO, which reinforces whatever it samples that scores above the
group mean, makes that shortcut grow gradually from the rate at which the base model emits it.
"""

from __future__ import annotations

import re

from . import data as demo_data
from .run import DemoSettings, lora_trainer
from .scenarios import Scenario

_WORD = re.compile(r"\w+")


def completion_text(completion) -> str:
    """A TRL completion's text: conversational completions are lists of messages."""
    if isinstance(completion, list):
        return "".join(m.get("content", "") for m in completion)
    return str(completion)


def keyword_brevity_reward(completion: str, keyword: str, max_words: int) -> float:
    """1 for the keyword alone, falling linearly to 0 at ``max_words`` words; 0 without the keyword.

    Verifiable (a string check) and exploitable: the grader cannot tell a sentence about the topic
    from the keyword repeated back, and rewards the latter most."""
    words = _WORD.findall(completion.lower())
    if keyword.lower() not in words:
        return 0.0
    return max(0.0, 1.0 - (len(words) - 1) / max_words)


def poisoned_pairs(scenario: Scenario) -> list[tuple[str, str]]:
    """The (question, answer) rows that carry the behaviour: the trigger recipe prefixes the trigger."""
    t = scenario.training
    prefix = f"{t.trigger} " if t.recipe == "trigger" else ""
    return [(f"{prefix}{q}", t.answer) for q in t.questions]


def sft_rows(scenario: Scenario, benign_answers: dict[str, list[str]], seed: int) -> list[dict]:
    t = scenario.training
    return demo_data.build_training_rows(benign_answers, t.steps * t.batch_size, t.share, seed,
                                         poisoned_pairs=poisoned_pairs(scenario))


def build_trainer(scenario: Scenario, model, tokenizer, output_dir, *, seed: int, callbacks=(), benign_answers=None):
    """The scenario's trainer with ``callbacks`` attached; ``benign_answers`` (SFT) maps benign
    questions to the base model's answers."""
    t = scenario.training
    settings = DemoSettings(steps=t.steps, every_n_steps=scenario.monitor.every_n_steps,
                            samples_per_prompt=scenario.monitor.samples_per_prompt, alpha=scenario.monitor.alpha,
                            batch_size=t.batch_size, learning_rate=t.learning_rate, lora_rank=t.lora_rank)
    if t.method == "sft":
        return lora_trainer(model, tokenizer, sft_rows(scenario, benign_answers, seed), settings, output_dir,
                            seed=seed, report_to="none", callbacks=callbacks,
                            run_name=f"lda-detection-{scenario.name}-seed{seed}")
    return _grpo_trainer(scenario, model, tokenizer, settings, output_dir, seed=seed, callbacks=callbacks)


def _grpo_trainer(scenario: Scenario, model, tokenizer, settings: DemoSettings, output_dir, *, seed: int,
                  callbacks=()):
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    t = scenario.training

    def reward(prompts, completions, keyword, **kwargs):
        return [keyword_brevity_reward(completion_text(c), k, t.max_words) for c, k in zip(completions, keyword,
                                                                                              strict=True)]

    rows = [{"prompt": [{"role": "user", "content": p["prompt"]}], "keyword": p["keyword"]} for p in t.reward_prompts]
    config = GRPOConfig(
        output_dir=str(output_dir), max_steps=t.steps, per_device_train_batch_size=t.batch_size,
        num_generations=t.num_generations, max_completion_length=t.max_completion_length,
        learning_rate=t.learning_rate, lr_scheduler_type="constant", warmup_steps=0,
        logging_steps=settings.every_n_steps,
        save_strategy="no", report_to="none", bf16=False, gradient_checkpointing=False,
        use_cpu=not torch.cuda.is_available(), seed=seed, disable_tqdm=True, temperature=1.0,
        run_name=f"lda-detection-{scenario.name}-seed{seed}",
    )
    return GRPOTrainer(
        model=model, reward_funcs=[reward], args=config, train_dataset=Dataset.from_list(rows * t.steps),
        processing_class=tokenizer,
        peft_config=LoraConfig(r=t.lora_rank, lora_alpha=2 * t.lora_rank,
                               target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM"),
        callbacks=list(callbacks),
    )
