"""``lda-monitor bench``: decoding throughput of LDA against its two natural baselines.

All figures come from one run on one machine, so only the ratios travel between machines:

1. ``generate``: Hugging Face ``after.generate`` alone, batched - the speed of ordinary sampling;
   two forwards per token make 0.5x of it the floor for any LDA loop.
2. ``lda-*``: our batched, KV-cached LDA loop (each PEFT strategy for a LoRA pair).
3. ``naive``: one prompt at a time with two KV caches and ``torch.multinomial``, as single-prompt
   LDA implementations do.

Every row decodes exactly ``max_new_tokens`` (stop tokens ignored) so token counts are equal.
Each row also reports the method's peak memory: ``torch.cuda.max_memory_allocated`` on a GPU, the
process's peak resident set size (sampled) on CPU, and the rise over the memory held before it.

``--config-preset`` (:data:`PRESETS`) measures the shapes users train (1B, 3B, 8B Llama) without a
download: a randomly initialised model of that architecture with a LoRA side. Random weights give
the time and memory of real ones exactly; what they say is noise, which a benchmark ignores.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import torch

from .chat import encode_rendered, render_prompt
from .dtypes import cpu_has_native_bf16, cpu_model_name
from .pairs import PeftPair, TwoModelPair
from .presets import PRESETS, VOCAB_SIZE
from .sampling import SamplingConfig, combine, inference_state, sample
from .sampling_config import PEFT_STRATEGIES
from .tensors import left_pad, pad_id

BENCH_PROMPTS = [
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "Give me three tips for sleeping better.",
    "Explain what a hash table is.",
    "How do I boil an egg?",
    "Tell me a story about a brave cat.",
    "What causes rain?",
    "Summarise the plot of Romeo and Juliet in two sentences.",
]


def preset_model(name: str, *, dtype: torch.dtype, device=None, overrides: dict | None = None):
    """A randomly initialised Llama of preset ``name``'s shape, built directly in ``dtype`` on
    ``device`` (no float32 copy, no download). ``overrides`` change config fields (tests use tiny
    sizes through the same code)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if name not in PRESETS:
        raise ValueError(f"unknown config preset {name!r}; choose one of {sorted(PRESETS)}")
    config = LlamaConfig(vocab_size=VOCAB_SIZE, max_position_embeddings=8192, rope_theta=500000.0,
                         **{**PRESETS[name], **(overrides or {})})
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device or "cpu"):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def preset_tokenizer():
    """The embedded model's tokenizer (offline): preset models have a larger vocabulary, so its ids
    are valid for them and prompts render with a real chat template."""
    from transformers import AutoTokenizer

    from .embedded import embedded_model_dir

    return AutoTokenizer.from_pretrained(embedded_model_dir())


def parameter_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@contextmanager
def peak_memory(device):
    """Yields a dict filled on exit with ``peak`` and ``rise`` (bytes): the method's peak and its
    increase over the memory in use when it started. GPU: the allocator's exact peak. CPU: the
    resident set sampled every 5 ms (a peak shorter than that can be missed)."""
    out: dict = {}
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
    else:
        start = _rss_bytes()
        peak = [start]
        stop = threading.Event()

        def poll():
            while not stop.wait(0.005):
                peak[0] = max(peak[0], _rss_bytes())

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
    try:
        yield out
    finally:
        if cuda:
            torch.cuda.synchronize(device)
            out["peak"] = torch.cuda.max_memory_allocated(device)
        else:
            stop.set()
            poller.join()
            out["peak"] = max(peak[0], _rss_bytes())
        out["rise"] = out["peak"] - start


def perturbed_lora(model, seed: int = 0, rank: int = 8):
    """Wrap ``model`` in a LoRA adapter with small random weights: a stand-in fine-tune."""
    from peft import LoraConfig, get_peft_model

    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():  # PEFT draws lora_A from the global RNG: seed it, and leave it as it was
        torch.manual_seed(seed)
        peft_model = get_peft_model(model, LoraConfig(r=rank, target_modules=["q_proj", "v_proj", "o_proj"]))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                noise = torch.randn(param.shape, generator=generator, dtype=torch.float32) * 0.02
                param.copy_(noise.to(param.dtype))
    return peft_model.eval()


def bench_prompts(batch_size: int) -> list[str]:
    """``batch_size`` distinct prompts: the LDA loop prefills a repeated prompt once, which
    ``generate`` does not, so repeats would flatter LDA."""
    n = len(BENCH_PROMPTS)
    return [BENCH_PROMPTS[i % n] + (f" (version {i // n + 1})" if i >= n else "") for i in range(batch_size)]


def _prompt_batch(tokenizer, batch_size: int) -> tuple[list[str], list[list[int]]]:
    prompts = bench_prompts(batch_size)
    ids = [encode_rendered(tokenizer, render_prompt(tokenizer, p)) for p in prompts]
    return prompts, ids


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def time_generate(model, tokenizer, ids: list[list[int]], max_new_tokens: int) -> float:
    """Seconds for one batched ``generate`` call of exactly ``max_new_tokens`` per row."""
    pad = pad_id(tokenizer)
    input_ids, mask, _ = left_pad(ids, pad, model.device)
    with torch.no_grad():
        return _timed(
            lambda: model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                do_sample=True,
                max_new_tokens=max_new_tokens,
                min_new_tokens=max_new_tokens,
                pad_token_id=pad,
                use_cache=True,
            )
        )


def time_naive(pair, ids: list[list[int]], max_new_tokens: int, alpha: float) -> float:
    """Seconds for the single-prompt, two-cache loop over ``ids`` (one prompt at a time)."""

    def run():
        for row in ids:
            tokens = torch.tensor([row], device=pair.device)
            mask = torch.ones_like(tokens)
            session = pair.open(need_before=True)
            positions = torch.arange(len(row), device=pair.device)[None]
            after, before = session.forward(tokens, mask, positions)
            for step in range(max_new_tokens):
                probs = torch.softmax(combine(after, before, alpha), -1)
                token = torch.multinomial(probs, 1)
                mask = torch.cat([mask, mask.new_ones((1, 1))], -1)
                after, before = session.forward(token, mask, positions[:, -1:] + step + 1)

    with inference_state(pair.models):
        return _timed(run)


def run_bench(
    after_model,
    tokenizer,
    *,
    before_model=None,
    batch_size: int = 32,
    max_new_tokens: int = 64,
    alpha: float = 1.0,
    naive_prompts: int = 4,
) -> dict:
    """Measure and return tokens/s and ratios (see module docstring)."""
    prompts, ids = _prompt_batch(tokenizer, batch_size)
    tokens = batch_size * max_new_tokens
    if before_model is None:
        after_model = perturbed_lora(after_model)
        pairs = {f"lda-{s}": PeftPair(after_model, tokenizer, strategy=s) for s in PEFT_STRATEGIES if s != "auto"}
    else:
        pairs = {"lda-two-models": TwoModelPair(after_model, before_model, tokenizer)}
    config = SamplingConfig(alpha=alpha, max_new_tokens=max_new_tokens, batch_size=batch_size, ignore_eos=True)
    warm = SamplingConfig(alpha=alpha, max_new_tokens=2, batch_size=batch_size, ignore_eos=True)
    device = next(iter(pairs.values())).device
    memory = {}
    time_generate(after_model, tokenizer, ids, 2)
    with peak_memory(device) as memory["generate"]:
        results = {"generate": tokens / time_generate(after_model, tokenizer, ids, max_new_tokens)}
    for name, pair in pairs.items():
        sample(pair, prompts, warm)
        with peak_memory(device) as memory[name]:
            results[name] = tokens / _timed(lambda p=pair: sample(p, prompts, config))
    first_pair = next(iter(pairs.values()))
    if naive_prompts:
        naive_ids = ids[:naive_prompts]
        with peak_memory(device) as memory["naive"]:
            seconds = time_naive(first_pair, naive_ids, max_new_tokens, alpha)
        results["naive"] = len(naive_ids) * max_new_tokens / seconds
    best = max((k for k in results if k.startswith("lda-")), key=results.get)
    return {
        "device": str(first_pair.device),
        "dtype": str(next(after_model.parameters()).dtype).replace("torch.", ""),
        "threads": torch.get_num_threads(),
        "cpu": cpu_model_name(),
        "cpu_native_bf16": cpu_has_native_bf16(),
        "batch_size": batch_size,
        "max_new_tokens": max_new_tokens,
        "alpha": alpha,
        "parameter_bytes": parameter_bytes(after_model),
        "tokens_per_second": {k: round(v, 1) for k, v in results.items()},
        "peak_memory_bytes": {k: m["peak"] for k, m in memory.items()},
        "peak_rise_bytes": {k: m["rise"] for k, m in memory.items()},
        "best_lda": best,
        "ratio_lda_vs_generate": round(results[best] / results["generate"], 3),
        **({"ratio_lda_vs_naive": round(results[best] / results["naive"], 2)} if "naive" in results else {}),
        **{f"ratio_{k}_vs_generate": round(v / results["generate"], 3)
           for k, v in results.items() if k.startswith("lda-")},
    }


def format_bench(report: dict) -> str:
    mb = 1 << 20
    lines = [
        f"device {report['device']} ({report['cpu']}, native bf16: {report['cpu_native_bf16']}), "
        f"{report['dtype']}, {report['threads']} threads, "
        f"batch {report['batch_size']}, {report['max_new_tokens']} new tokens, alpha {report['alpha']}, "
        f"weights {report['parameter_bytes'] / mb:.0f} MiB",
        f"{'method':<18}{'tokens/s':>10}{'x generate':>12}{'peak MiB':>10}{'rise MiB':>10}",
    ]
    gen = report["tokens_per_second"]["generate"]
    for name, tps in report["tokens_per_second"].items():
        lines.append(f"{name:<18}{tps:>10.1f}{tps / gen:>12.3f}"
                     f"{report['peak_memory_bytes'][name] / mb:>10.0f}{report['peak_rise_bytes'][name] / mb:>10.0f}")
    naive = (f", {report['ratio_lda_vs_naive']:.1f}x the naive single-prompt loop"
             if "ratio_lda_vs_naive" in report else "")
    lines.append(f"best LDA ({report['best_lda']}): {report['ratio_lda_vs_generate']:.3f}x generate{naive}")
    return "\n".join(lines)
