"""lda-monitor: Logit Diff Amplification monitoring for language-model training.

Sampling from ``logits_after + alpha * (logits_after - logits_before)`` makes behaviours
that training made rare show up often enough to catch with a few hundred rollouts.
Heavy submodules (torch, transformers) are imported lazily so ``import lda_monitor`` is cheap.
"""

__version__ = "0.1.0"
