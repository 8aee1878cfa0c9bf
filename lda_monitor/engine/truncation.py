"""The sampling transforms (temperature, top-k, top-p, min-p) with Hugging Face ``generate``'s
exact semantics, without sorting the vocabulary.

Hugging Face's top-p warper sorts the whole vocabulary of every row to find the nucleus, and the
decode loop needs a nucleus per distribution per step (the sampled one, the after and before
models', one per scored alpha). A nucleus is usually a few dozen tokens, so :func:`top_p` finds
it from a partial top-k of the logits and their probabilities in float64. Its output is the
warper's own, bit for bit: a row whose boundary is not decided beyond rounding doubt (the
boundary token's cumulative probability within about a thousand float32 ulps of ``1 - top_p``,
equal logits on both sides of the boundary, whose order the warper's unstable sort decides, or
a nucleus wider than the widest window) goes through Hugging Face's warper itself, as do
half-precision inputs (the engine passes float32). Temperature, top-k and min-p need no sort and
are Hugging Face's own warpers.
"""

from __future__ import annotations

import torch

from .sampling_config import SamplingConfig

# Partial top-k windows tried in turn before a row falls back to the full sort.
WINDOWS = (64, 1024)
# Distance from the threshold, in float32 ulps relative to it, within which a
# cumulative probability counts as undecided: generous against the float32 sums' reordering.
_ULPS = 1000


def top_p(scores: torch.Tensor, p: float) -> torch.Tensor:
    """``TopPLogitsWarper(p)(None, scores)`` for 2-D ``scores``, without a full sort."""
    from transformers.generation.logits_process import TopPLogitsWarper

    rows, vocab = scores.shape
    dtype = scores.dtype
    if dtype not in (torch.float32, torch.float64):  # the warper's own half-precision sums decide
        return TopPLogitsWarper(top_p=p)(None, scores)
    # The warper compares its cumulative sums with 1 - p rounded to the scores' dtype.
    threshold = float(torch.tensor(1 - p, dtype=dtype))
    eps = torch.finfo(torch.float32).eps
    tol = _ULPS * eps * threshold + eps
    log_total = scores.logsumexp(-1, keepdim=True).double()
    keep = torch.zeros_like(scores, dtype=torch.bool)
    pending = torch.arange(rows, device=scores.device)
    for width in dict.fromkeys(min(w, vocab) for w in WINDOWS):
        if not len(pending):
            break
        values, ids = scores[pending].topk(width, dim=-1)
        mass = (values.double() - log_total[pending]).exp()
        # What the warper's ascending cumulative sum reads at each of these tokens, up to its rounding.
        cumulative = 1.0 - (mass.cumsum(-1) - mass)
        kept = (cumulative > threshold).sum(-1).clamp(min=1)  # the top token is always kept
        last = (kept - 1)[:, None]
        # The last kept token is clearly above the threshold (the top token needs no margin) ...
        decided = (kept == 1) | ((cumulative.gather(1, last).squeeze(-1) - threshold) > tol)
        # ... and the first dropped one is in the window, clearly at or below it, and ranked as the
        # warper ranks it: a group of equal logits cut by the window's end may be incomplete.
        first_out = kept.clamp(max=width - 1)[:, None]
        clear = (threshold - cumulative.gather(1, first_out).squeeze(-1)) > tol
        untied = values.gather(1, last).squeeze(-1) != values.gather(1, first_out).squeeze(-1)
        decided &= torch.where(kept < width, clear & untied, width == vocab)
        rank = torch.arange(width, device=scores.device)
        done = pending[decided]
        keep[done] = keep[done].scatter(1, ids[decided], rank[None, :] < kept[decided, None])
        pending = pending[~decided]
    out = scores.masked_fill(~keep, float("-inf"))
    if len(pending):
        out[pending] = TopPLogitsWarper(top_p=p)(None, scores[pending])
    return out


class Transforms:
    """A :class:`SamplingConfig`'s transforms, in ``generate``'s order, split so that the
    temperature-only distribution (the policy's, for coherence) is a by-product."""

    def __init__(self, config: SamplingConfig):
        from transformers.generation.logits_process import MinPLogitsWarper, TopKLogitsWarper

        self.greedy = config.greedy
        self.temperature = config.temperature
        self.top_k = None if config.greedy or not config.top_k else TopKLogitsWarper(top_k=config.top_k)
        self.top_p = None if config.greedy or config.top_p >= 1.0 else config.top_p
        self.min_p = None if config.greedy or not config.min_p else MinPLogitsWarper(min_p=config.min_p)

    @property
    def truncates(self) -> bool:
        return any(x is not None for x in (self.top_k, self.top_p, self.min_p))

    def temper(self, logits: torch.Tensor) -> torch.Tensor:
        """Temperature only (greedy: the logits as they are)."""
        if self.greedy or self.temperature == 1.0:
            return logits
        return logits / self.temperature

    def truncate(self, tempered: torch.Tensor) -> torch.Tensor:
        """Top-k, top-p, min-p of already tempered logits."""
        x = tempered
        if self.top_k is not None:
            x = self.top_k(None, x)
        if self.top_p is not None:
            x = top_p(x, self.top_p)
        if self.min_p is not None:
            x = self.min_p(None, x)
        return x

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        return self.truncate(self.temper(logits))
