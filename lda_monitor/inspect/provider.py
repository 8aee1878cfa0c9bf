"""The ``lda`` model provider for inspect_ai: the amplified pair, sampled in-process.

    inspect eval task.py --model lda/AFTER -M before=REF -M alpha=2

``AFTER`` and ``REF`` are what ``lda-monitor sample --after/--before`` take: model directories,
PEFT adapter directories (an adapter alone needs no ``before``: its base is the reference) or the
embedded model's name. Model args (``-M``): ``before``, ``adapter``, ``base_model``, ``alpha``
(default 1; 0 samples the policy, -1 the reference), ``seed`` (default 0; inspect's ``--seed``
wins), ``device``, ``dtype`` (default auto), ``peft_strategy``.

Each inspect sample is one request, decoded alone with its own random stream ``(seed, 0, 0)``:
the text equals ``lda-monitor sample --prompt TEXT --seed SEED --alpha A`` with the same
settings (in float32; bfloat16 results depend on the batch shape). Requests run one at a time,
under a lock: the pair's models and tokenizer are shared, and a decode changes the tokenizer's
padding side while it runs, and inspect starts an eval's samples concurrently.
Inspect's settings map onto the sampler: ``max_tokens`` (default 128), ``temperature`` (0 =
greedy), ``top_p``, ``top_k``, ``stop_seqs``, ``seed``; tools are refused, the pair cannot call them.
"""

from __future__ import annotations

import asyncio
import inspect as python_inspect
import threading

from inspect_ai.model import ChatMessage, GenerateConfig, ModelAPI, ModelOutput, ModelUsage
from inspect_ai.tool import ToolChoice, ToolInfo

from ..engine.models import load_pair
from ..engine.sampling import STOP_MAX_TOKENS, sample
from ..engine.sampling_config import SamplingConfig
from ..errors import UserInputError

DEFAULT_MAX_TOKENS = SamplingConfig.__dataclass_fields__["max_new_tokens"].default


class LDAModelAPI(ModelAPI):
    """inspect's ModelAPI over a :class:`~lda_monitor.engine.pairs.LogitPair`; see the module docstring."""

    def __init__(self, model_name: str, base_url: str | None = None, api_key: str | None = None,
                 config: GenerateConfig | None = None, *, before: str | None = None, adapter: str | None = None,
                 base_model: str | None = None, alpha: float = 1.0, seed: int = 0, device: str | None = None,
                 dtype: str = "auto", peft_strategy: str = "auto", **unknown) -> None:
        if unknown:
            accepted = [p for p in python_inspect.signature(LDAModelAPI.__init__).parameters
                        if p not in ("self", "model_name", "base_url", "api_key", "config", "unknown")]
            raise UserInputError(f"lda model: unknown model arg(s) {sorted(unknown)}; -M takes {', '.join(accepted)}")
        super().__init__(model_name=model_name, base_url=base_url, api_key=api_key, config=config or GenerateConfig())
        import torch

        self.alpha = float(alpha)
        self.seed = int(seed)
        self._decoding = threading.Lock()
        self.pair = load_pair(model_name, before=before, adapter=adapter, base=base_model,
                              device=device or ("cuda" if torch.cuda.is_available() else "cpu"), dtype=dtype,
                              peft_strategy=peft_strategy)

    def sampling(self, config: GenerateConfig) -> SamplingConfig:
        """The sampler's settings for one request (see the module docstring)."""
        greedy = config.temperature == 0
        knobs = {} if greedy else {k: v for k, v in (("temperature", config.temperature), ("top_p", config.top_p),
                                                       ("top_k", config.top_k)) if v is not None}
        return SamplingConfig(alpha=self.alpha, greedy=greedy, seed=self.seed if config.seed is None else config.seed,
                              max_new_tokens=config.max_tokens or DEFAULT_MAX_TOKENS,
                              stop_strings=tuple(config.stop_seqs or ()), **knobs)

    def _sample(self, messages: list[dict], config: SamplingConfig):
        with self._decoding:
            return sample(self.pair, [messages], config)

    async def generate(self, input: list[ChatMessage], tools: list[ToolInfo], tool_choice: ToolChoice,
                       config: GenerateConfig) -> ModelOutput:
        if tools:
            raise UserInputError("lda model: tools are not supported (the pair samples text only)")
        messages = [{"role": m.role, "content": m.text} for m in input]
        (rollout,) = await asyncio.to_thread(self._sample, messages, self.sampling(config))
        stop = "max_tokens" if rollout.stop_reason == STOP_MAX_TOKENS else "stop"
        output = ModelOutput.from_content(model=self.model_name, content=rollout.completion, stop_reason=stop)
        prompt_tokens = len(rollout.prompt_token_ids)
        output.usage = ModelUsage(input_tokens=prompt_tokens, output_tokens=rollout.num_tokens,
                                  total_tokens=prompt_tokens + rollout.num_tokens)
        output.metadata = {"alpha": self.alpha, "seed": self.sampling(config).seed,
                           "kl_amp_after": rollout.kl_amp_after}
        return output
