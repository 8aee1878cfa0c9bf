"""Load a causal LM (and its tokenizer) from what a user types.

Accepted specs: the embedded model's name (``smollm2-135m-instruct``), a local model directory,
or a local PEFT adapter directory (its base comes from ``base=`` or ``adapter_config.json``).
Nothing is fetched from the Hugging Face hub: a spec that is not a local path fails with a
message that says so. Weights load from safetensors unless pickle files are explicitly allowed,
and custom model code runs only with ``trust_remote_code=True``.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError

from ..errors import UserInputError
from .adapter_fit import check_adapter_fits
from .dtypes import DEFAULT_DTYPE, resolve_dtype
from .embedded import EMBEDDED_NAME, embedded_model_dir

_CAUSAL_LM_SUFFIXES = ("ForCausalLM", "LMHeadModel")


def resolve_model_dir(spec: str | Path) -> Path:
    """The local directory behind a model spec (converting the embedded model on first use)."""
    if str(spec) == EMBEDDED_NAME:
        return embedded_model_dir()
    path = Path(spec).expanduser()
    if not path.exists():
        raise UserInputError(
            f"model path {str(spec)!r} does not exist; give a local model or adapter directory "
            f"or {EMBEDDED_NAME!r} (nothing is downloaded from the hub)"
        )
    if not path.is_dir():
        raise UserInputError(f"model path {str(spec)!r} is a file; give the directory that holds config.json")
    return path


def is_adapter_dir(path: Path) -> bool:
    return (path / "adapter_config.json").is_file()


def _check_weights(path: Path, allow_pickle: bool) -> None:
    if any(path.glob("*.safetensors")):
        return
    if any(path.glob("*.bin")) or any(path.glob("*.pt")):
        if not allow_pickle:
            raise UserInputError(
                f"{path} holds only pickle weights (.bin), which can run code when loaded; "
                "convert them to safetensors or pass --allow-pickle if you trust the source"
            )
        return
    raise UserInputError(f"{path} holds no model weights (*.safetensors); is the directory complete?")


def load_tokenizer(path: Path, *, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise UserInputError(f"cannot load a tokenizer from {path}: {exc}") from None


def load_causal_lm(
    path: Path, *, device=None, dtype=DEFAULT_DTYPE, allow_pickle=False, trust_remote_code=False
):
    """A full causal LM from a local directory, with clear errors for the usual mistakes."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if not (path / "config.json").is_file():
        raise UserInputError(f"{path} has no config.json; it is not a Hugging Face model directory")
    _check_weights(path, allow_pickle)
    try:
        config = AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise UserInputError(f"cannot read the model config in {path}: {exc}") from None
    architectures = getattr(config, "architectures", None) or []
    if architectures and not any(a.endswith(_CAUSAL_LM_SUFFIXES) for a in architectures):
        # AutoModelForCausalLM would happily bolt a random LM head onto e.g. a BERT classifier.
        raise UserInputError(
            f"{path} is not a causal language model (architecture {', '.join(architectures)}); "
            "give a checkpoint with a *ForCausalLM architecture"
        )
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(path),
            config=config,
            dtype=resolve_dtype(dtype, device),
            use_safetensors=not allow_pickle or any(path.glob("*.safetensors")),
            trust_remote_code=trust_remote_code,
        )
    except ValueError as exc:
        if "Unrecognized configuration class" in str(exc):
            raise UserInputError(
                f"{path} is not a causal language model ({type(config).__name__}); "
                "give a checkpoint with a *ForCausalLM architecture"
            ) from None
        raise UserInputError(f"cannot load the model in {path}: {exc}") from None
    except (OSError, SafetensorError) as exc:
        raise UserInputError(f"cannot read the weights in {path} (corrupt or incomplete?): {exc}") from None
    if device is not None:
        model.to(device)
    model.eval()
    return model


def adapter_base(path: Path, base: str | Path | None, *, trust_remote_code: bool = False) -> Path:
    """The base model directory for an adapter: ``base`` if given, else adapter_config.json's;
    checked to fit the adapter's layers before any weight is loaded (a given base may be another model)."""
    if base is not None:
        found = resolve_model_dir(base)
    else:
        declared = json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")
        if not (declared and (declared == EMBEDDED_NAME or Path(declared).expanduser().is_dir())):
            raise UserInputError(
                f"the adapter in {path} names base model {declared!r}, which is not a local directory; "
                "pass the base explicitly (--base-model PATH, or base=...)"
            )
        found = resolve_model_dir(declared)
    check_adapter_fits(path, found, trust_remote_code=trust_remote_code)
    return found


def load_model(
    spec: str | Path,
    *,
    base: str | Path | None = None,
    device=None,
    dtype=DEFAULT_DTYPE,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
):
    """Load ``(model, tokenizer)``. An adapter dir gives a ``PeftModel`` over its base (unmerged).

    ``dtype`` defaults to "auto", as on the command line (bfloat16 on hardware with native bf16,
    else float32); pass ``dtype="float32"`` to train in full precision."""
    path = resolve_model_dir(spec)
    if is_adapter_dir(path):
        from peft import PeftModel

        base_dir = adapter_base(path, base, trust_remote_code=trust_remote_code)
        model = load_causal_lm(
            base_dir, device=device, dtype=dtype, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code
        )
        try:
            model = PeftModel.from_pretrained(model, str(path), is_trainable=False)
        except (ValueError, OSError, RuntimeError) as exc:
            raise UserInputError(f"cannot load the adapter in {path} onto {base_dir}: {exc}") from None
        has_tokenizer = (path / "tokenizer_config.json").is_file()
        tokenizer = load_tokenizer(path if has_tokenizer else base_dir, trust_remote_code=trust_remote_code)
        return model.eval(), tokenizer
    model = load_causal_lm(
        path, device=device, dtype=dtype, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code
    )
    return model, load_tokenizer(path, trust_remote_code=trust_remote_code)


def load_pair(
    after: str | Path,
    *,
    before: str | Path | None = None,
    adapter: str | Path | None = None,
    base: str | Path | None = None,
    device=None,
    dtype=DEFAULT_DTYPE,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    peft_strategy: str = "auto",
):
    """Build a :class:`~lda_monitor.engine.pairs.LogitPair` from command-line style specs.

    * ``after`` + ``before``: two separate models.
    * ``after`` + ``adapter``: the adapter on top of ``after`` is the policy, ``after`` alone the
      reference (one copy of the weights).
    * ``after`` an adapter directory alone: the adapter is the policy, its base the reference.
    """
    from .pairs import PeftPair, TwoModelPair

    options = dict(device=device, dtype=dtype, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    if before is not None and adapter is not None:
        raise UserInputError("give either --before or --adapter, not both")
    if adapter is not None:
        adapter_dir = resolve_model_dir(adapter)
        if not is_adapter_dir(adapter_dir):
            raise UserInputError(f"{adapter_dir} has no adapter_config.json; --adapter takes a PEFT adapter dir")
        model, tokenizer = load_model(adapter_dir, base=after, **options)
        return PeftPair(model, tokenizer, strategy=peft_strategy)
    model, tokenizer = load_model(after, base=base, **options)
    if before is None:
        if not hasattr(model, "peft_config"):
            raise UserInputError(
                f"{after} is a full model: give a reference with --before MODEL, or an adapter with --adapter DIR"
            )
        return PeftPair(model, tokenizer, strategy=peft_strategy)
    before_model, before_tokenizer = load_model(before, base=base, **options)
    return TwoModelPair(model, before_model, tokenizer, before_tokenizer)
