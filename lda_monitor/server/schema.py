"""Request and response bodies of ``lda-monitor serve``.

The names, defaults and bounds of the reference LDA server's fields are kept exactly, so
scripts written against it keep working; fields it does not know are optional additions.
Like the reference server, unknown request fields are ignored rather than refused.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

# |alpha| above this is almost always a typo (published runs use 0.3 to 20); alpha = -1 is the
# before model exactly, alpha < -1 amplifies towards the before model.
MAX_ABS_ALPHA = 50.0
MAX_NEW_TOKENS = 512

NonEmptyPrompt = Annotated[str, Field(min_length=1)]


class SamplingFields(BaseModel):
    """Knobs every generation endpoint shares."""

    max_new_tokens: int = Field(80, ge=1, le=MAX_NEW_TOKENS, description="maximum tokens to generate")
    temperature: float = Field(0.8, gt=0.0, description="sampling temperature")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="nucleus sampling threshold")
    do_sample: bool = Field(True, description="false: greedy decoding (argmax of the amplified logits)")
    apply_chat_template: bool = Field(True, description="render the prompt with the after model's chat template")
    system_prompt: str | None = Field(None, description="system message (chat template) or prefix (raw text)")
    seed: int | None = Field(
        None, ge=0, lt=2**63,
        description="same seed and fields give the same completions, alone or batched with other requests; "
                    "omitted: a random seed, returned in the response",
    )
    top_k: int = Field(0, ge=0, description="top-k filter (0 = off)")


class LDAFields(SamplingFields):
    """What the amplified endpoints add: alpha, several samples, diagnostics."""

    alpha: float = Field(
        1.0, ge=-MAX_ABS_ALPHA, le=MAX_ABS_ALPHA,
        description="amplification: 0 = after model, -1 = before model, > 0 amplifies what training changed",
    )
    samples: int = Field(1, ge=1, description="completions per prompt (the server's --max-samples bounds it)")
    diagnostics: bool = Field(False, description="per-token log-probs and KL(amplified || after)")


class GenerateRequest(SamplingFields):
    prompt: NonEmptyPrompt


class LDAGenerateRequest(LDAFields):
    prompt: NonEmptyPrompt


class LDABatchRequest(LDAFields):
    prompts: list[NonEmptyPrompt] = Field(..., min_length=1)


class TokenDiagnostics(BaseModel):
    tokens: list[str]
    logprob_amplified: list[float] = Field(description="log-prob of each token under the distribution sampled from")
    logprob_after: list[float]
    logprob_before: list[float] | None = Field(description="null at alpha 0, where the before model is not run")
    kl_amp_after: list[float] = Field(description="KL(amplified || after) at each step")
    kl_amp_after_mean: float


class JudgeVerdict(BaseModel):
    flagged: bool | None = Field(description="null: the judge could not score this completion (see error)")
    score: float | None = None
    label: str | None = None
    explanation: str | None = None
    error: str | None = None


class Completion(BaseModel):
    completion: str
    text: str = Field(description="prompt and completion decoded together, special tokens skipped")
    tokens_generated: int = Field(description="sampled tokens, the stop token included")
    stopped_early: bool = Field(description="stopped on EOS, end-of-turn or a stop string before max_new_tokens")
    stop_reason: str
    diagnostics: TokenDiagnostics | None = None
    verdicts: dict[str, JudgeVerdict] | None = Field(None, description="per judge, when the server has --judge")


class PromptResult(Completion):
    prompt: str
    formatted_prompt: str
    samples: list[Completion] | None = Field(
        None, description="every sample when samples > 1 (the first is also inline)")


class LDAGenerateResponse(PromptResult):
    alpha: float
    model_after: str
    model_before: str
    seed: int


class LDABatchResponse(BaseModel):
    results: list[PromptResult]
    alpha: float
    model_after: str
    model_before: str
    batch_size: int
    seed: int


class ModelResponse(BaseModel):
    model_id: str
    completion: str
    text: str


class GenerateResponse(BaseModel):
    prompt: str
    model_1: ModelResponse = Field(description="the after model")
    model_2: ModelResponse = Field(description="the before model")
    seed: int


class TokenizerCompatibilityInfo(BaseModel):
    compatible: bool
    vocab_size_1: int = Field(description="after tokenizer")
    vocab_size_2: int = Field(description="before tokenizer")
    vocabs_match: bool
    warning: str | None = None


class HealthInfo(BaseModel):
    status: str
    model_after: str
    model_before: str
    pair: str
    judge: str | None
    requests_served: int
    engine_batches: int
    queued: int
