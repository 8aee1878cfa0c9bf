"""``python -m lda_monitor.demo.gpu_check``: the engine on one GPU, ready to run, no download.

Needs only torch, transformers, peft and accelerate (trl for the last part), and no network:
every model is randomly initialised and the tokenizer (256 byte tokens and ChatML's specials) is
built in code. Three parts, sized to finish well within 8 minutes on one recent GPU (not yet run on one):

1. correctness on the device: the sort-free top-p against Hugging Face's warper (bit for bit),
   and greedy LDA from the engine (KV caches, left padding, rows leaving the batch) against a
   brute-force loop of cache-free full-sequence forwards, in float32 and bfloat16. In bfloat16
   the cached and the cache-free forward round differently, so a row may leave the brute-force
   path where its top two amplified logits are within rounding of each other (a near-tie); any
   other difference fails;
2. ``lda-monitor bench --config-preset`` at 1B and 8B (generate and each LDA strategy, 256
   tokens): tokens/s and peak ``torch.cuda.max_memory_allocated``;
3. a short LoRA SFT run with :class:`~lda_monitor.monitor.callback.LDAMonitorCallback` when trl
   is importable (skipped with a note otherwise).

It lives in ``demo`` rather than ``engine`` because part 3 drives the training callback.
``--tiny`` (automatic without a GPU) runs the same code at tiny sizes on the CPU in seconds;
CI runs it that way.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
PROMPTS = ["Hi", "What is the capital of France?", "Write a haiku about rain.", "Explain hash tables briefly.",
           "Tell me a story.", "How do I boil an egg?"]


def byte_tokenizer():
    """A byte-level tokenizer with ChatML specials (every text encodes; nothing to download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    backend = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(sorted(alphabet))}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.chat_template = CHATML
    return tok


def small_llama(tokenizer, seed: int, *, tiny: bool, dtype, device):
    """A small random Llama whose output layer is scaled up, so that distributions are peaked like
    a trained model's and greedy choices are not all near-ties."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    size = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2) if tiny else dict(
        hidden_size=512, intermediate_size=1024, num_hidden_layers=6)
    config = LlamaConfig(vocab_size=len(tokenizer), num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, tie_word_embeddings=False,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, **size)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)
    return model.to(device=device, dtype=dtype).eval()


def check_greedy(after, before, tokenizer, *, alpha: float, max_new_tokens: int, near_tie: float) -> dict:
    """Engine greedy LDA against a brute-force loop; see the module docstring."""
    import torch

    from ..engine.chat import encode_rendered, render_prompt
    from ..engine.pairs import TwoModelPair
    from ..engine.sampling import STOP_MAX_TOKENS, SamplingConfig, sample

    config = SamplingConfig(alpha=alpha, greedy=True, max_new_tokens=max_new_tokens, batch_size=len(PROMPTS))
    rollouts = sample(TwoModelPair(after, before, tokenizer), PROMPTS, config)
    device = next(after.parameters()).device
    equal = near_ties = 0
    for r in rollouts:
        prefix = encode_rendered(tokenizer, render_prompt(tokenizer, r.prompt))
        diverged = False
        for t, token in enumerate(r.token_ids):
            ids = torch.tensor([prefix + r.token_ids[:t]], device=device)
            with torch.no_grad():
                a = after(ids).logits[0, -1].float()
                b = before(ids).logits[0, -1].float()
            amp = (1 + alpha) * a - alpha * b
            best = int(amp.argmax())
            if best != token:
                gap = float(amp[best] - amp[token])
                if gap > near_tie:
                    raise AssertionError(f"prompt {r.prompt_index} step {t}: engine chose {token}, brute force "
                                         f"{best}, amplified logits {gap:.4f} apart (more than a near-tie)")
                diverged = True
                break
        if not diverged and r.stop_reason == STOP_MAX_TOKENS:
            assert len(r.token_ids) == max_new_tokens
        equal += not diverged
        near_ties += diverged
    return {"rows": len(rollouts), "equal": equal, "left_at_a_near_tie": near_ties,
            "tokens": sum(r.num_tokens for r in rollouts)}


def check_transforms(device: str, tiny: bool) -> dict:
    """The sort-free top-p (and the other transforms) equal Hugging Face's warpers on the device,
    bit for bit, on random logits: float32, bf16-valued, and with many ties."""
    import torch

    from ..engine.sampling_config import SamplingConfig
    from ..engine.truncation import Transforms

    generator = torch.Generator().manual_seed(0)
    checked = 0
    for vocab in (300, 49152) if tiny else (300, 49152, 128256):
        for kind in ("fp32", "bf16-valued", "ties"):
            x = torch.randn(16, vocab, generator=generator) * 4
            x = x.bfloat16().float() if kind == "bf16-valued" else (x * 2).round() / 2 if kind == "ties" else x
            x = x.to(device)
            for knobs in (dict(top_p=0.95), dict(top_p=0.5, temperature=0.8), dict(top_k=50, top_p=0.9, min_p=0.05)):
                config = SamplingConfig(**knobs)
                if not torch.equal(Transforms(config)(x), config.warpers()(None, x)):
                    raise AssertionError(f"transforms differ from the warpers on {device}: {kind}, {vocab}, {knobs}")
                checked += 1
    return {"cases": checked}


def check_correctness(device: str, tiny: bool) -> dict:
    import torch

    tokenizer = byte_tokenizer()
    out = {"transforms": check_transforms(device, tiny)}
    # bf16 logits of magnitude ~20 are spaced 0.125 apart, and the amplified logit combines two of
    # them with weights 2.5 and 1.5: a near-tie is a gap of a few such steps.
    for dtype, near_tie in ((torch.float32, 1e-3), (torch.bfloat16, 1.0)):
        after = small_llama(tokenizer, 1, tiny=tiny, dtype=dtype, device=device)
        before = copy.deepcopy(after)
        with torch.no_grad():
            noise = torch.randn(before.lm_head.weight.shape, generator=torch.Generator().manual_seed(0))
            before.lm_head.weight.add_(noise.to(device=device, dtype=dtype))
        result = check_greedy(after, before, tokenizer, alpha=1.5, max_new_tokens=8 if tiny else 32,
                              near_tie=near_tie)
        if dtype == torch.float32 and result["equal"] != result["rows"]:
            raise AssertionError(f"float32 greedy LDA left the brute-force path: {result}")
        out[str(dtype).replace("torch.", "")] = result
    return out


def bench_presets(device: str, tiny: bool, presets) -> dict:
    import torch

    from ..engine.bench import preset_model, run_bench
    from ..engine.dtypes import resolve_dtype

    tokenizer = byte_tokenizer()
    dtype = resolve_dtype("auto", device, announce=False)
    overrides = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, head_dim=16) if tiny else None
    out = {}
    for name in presets:
        model = preset_model(name, dtype=dtype, device=device, overrides=overrides)
        out[name] = run_bench(model, tokenizer, batch_size=2 if tiny else 16, max_new_tokens=8 if tiny else 256,
                              naive_prompts=0)
        del model
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return out


def check_training(device: str, tiny: bool, out_dir: str) -> dict:
    try:
        from trl import SFTConfig, SFTTrainer
    except ImportError:
        return {"skipped": "trl is not importable; install trl to run the LoRA training check"}
    import torch
    from datasets import Dataset
    from peft import LoraConfig

    from ..monitor.callback import LDAMonitorCallback

    tokenizer = byte_tokenizer()
    model = small_llama(tokenizer, 3, tiny=tiny, dtype=torch.float32, device="cpu")
    rows = [{"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": "Sure. " + p}]}
            for p in PROMPTS * 4]
    monitor = LDAMonitorCallback(prompts=PROMPTS[:4], judge="regex:egg", every_n_steps=2, alpha=2.0,
                                 samples_per_prompt=2, max_new_tokens=8, batch_size=16, warn_time_share=None)
    on_cpu = not device.startswith("cuda")
    args = SFTConfig(output_dir=out_dir, max_steps=4, per_device_train_batch_size=4, max_length=64, logging_steps=1,
                     save_strategy="no", report_to="none", disable_tqdm=True, gradient_checkpointing=False,
                     bf16=not on_cpu, use_cpu=on_cpu, learning_rate=5e-3, seed=0)
    trainer = SFTTrainer(model=model, train_dataset=Dataset.from_list(rows), processing_class=tokenizer, args=args,
                         callbacks=[monitor],
                         peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                task_type="CAUSAL_LM"))
    trainer.train()
    steps = [row["step"] for row in trainer.state.log_history if "lda/alpha" in row]
    if steps != [0, 2, 4]:
        raise AssertionError(f"the callback evaluated at steps {steps}, expected [0, 2, 4]")
    return {"evaluated_steps": steps, "reference": monitor.reference.kind}


def main(argv=None) -> int:
    import tempfile

    import torch

    parser = argparse.ArgumentParser(prog="python -m lda_monitor.demo.gpu_check", description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes on the CPU (automatic without a GPU)")
    parser.add_argument("--presets", default="llama-1b,llama-8b", help="bench presets, comma-separated")
    parser.add_argument("--skip-training", action="store_true", help="leave out the LoRA training check")
    parser.add_argument("--json-out", help="also write the report to this file")
    args = parser.parse_args(argv)
    tiny = args.tiny or not torch.cuda.is_available()
    device = "cpu" if tiny else "cuda"
    report: dict = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "tiny": tiny,
                    "torch": torch.__version__}
    start = time.perf_counter()
    report["correctness"] = check_correctness(device, tiny)
    print(json.dumps({"correctness": report["correctness"]}), file=sys.stderr)
    report["bench"] = bench_presets(device, tiny, [p for p in args.presets.split(",") if p])
    if args.skip_training:
        report["training"] = {"skipped": "--skip-training"}
    else:
        with tempfile.TemporaryDirectory() as out_dir:
            report["training"] = check_training(device, tiny, out_dir)
    report["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(report, indent=2))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
