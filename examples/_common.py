"""Shared bits of the examples: CPU-friendly trainer settings and the embedded model."""

from __future__ import annotations

import argparse

import torch

MODEL = "smollm2-135m-instruct"  # the embedded SmolLM2-135M-Instruct; any local model dir works


def parser(description: str, out: str, steps: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", default=out, help="output directory")
    p.add_argument("--max-steps", type=int, default=steps)
    p.add_argument("--samples", type=int, default=4, help="amplified rollouts per prompt")
    p.add_argument("--max-new-tokens", type=int, default=24)
    return p


def cpu_friendly() -> dict:
    """Trainer arguments for a laptop CPU: TRL defaults to bf16 and activation checkpointing."""
    return dict(bf16=False, gradient_checkpointing=False, use_cpu=not torch.cuda.is_available(),
                report_to="none", disable_tqdm=True, save_strategy="no")
