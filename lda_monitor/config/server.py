"""``lda-monitor serve``'s options, declared once: its flags and help are generated from
:class:`ServerOptions`, and the server's own defaults (:func:`~lda_monitor.server.create_app`,
:class:`~lda_monitor.server.Limits`) are taken from it. Importable without FastAPI, so the
command line builds its parser whether or not the ``serve`` extra is installed."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.config_fields import real_number
from ..engine.sampling_config import SEEDED_DECODING

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


@dataclass(frozen=True)
class ServerOptions:
    """What ``serve`` takes besides the two models (:class:`~lda_monitor.config.models.ModelOptions`)."""

    host: str = field(default="127.0.0.1", metadata={"help": (
        "bind address (the default serves this machine only)"), "metavar": "ADDRESS"})
    port: int = field(default=8000, metadata={"help": "TCP port"})
    judge: str | None = field(default=None, metadata={"help": (
        "judge spec; every completion then carries its verdicts"), "metavar": "SPEC"})
    max_prompt_tokens: int = field(default=2048, metadata={"help": "longest formatted prompt accepted"})
    max_prompts: int = field(default=64, metadata={"help": "most prompts in one batch request"})
    max_samples: int = field(default=16, metadata={"help": "most samples per prompt in one request"})
    max_batch_rows: int = field(default=64, metadata={"help": "most rows decoded together"})
    batch_wait_ms: float = field(default=0.0, metadata={"help": (
        "wait this long for more requests before decoding (trades latency for batching)"),
        "parse": real_number, "metavar": "MS"})
    alpha: float = field(default=1.0, metadata={"help": (
        "amplification of the OpenAI API's model 'lda' when a request sends no alpha")})
    seeded_decoding: str = field(default="float32", metadata={"help": (
        "in bfloat16/float16, requests that send a seed: 'float32' decodes them on a float32 copy "
        "of the weights, merged across clients and identical alone or under load; 'alone' decodes each "
        "alone in the model's dtype (no copy, one at a time); 'merged' merges them in the model's dtype "
        "(fastest; a seeded completion may then depend on what it was merged with)"),
        "choices": SEEDED_DECODING})
    log_level: str = field(default="info", metadata={"help": "uvicorn's log level", "choices": LOG_LEVELS})


SERVER_DEFAULTS = ServerOptions()
