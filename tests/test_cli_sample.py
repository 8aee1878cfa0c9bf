"""`lda-monitor sample` and the model loader, on tiny models saved to disk."""

from __future__ import annotations

import json

import pytest
import torch
from peft import LoraConfig, get_peft_model

from lda_monitor.cli import main
from tests.tiny import WORDS, build_tokenizer, tiny_llama

REQUIRED_KEYS = {"prompt", "completion", "token_ids", "stop_reason", "alpha", "logprob_sampled", "logprob_after",
                 "logprob_before"}


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    tok = build_tokenizer()
    after, before = tiny_llama(tok, seed=1), tiny_llama(tok, seed=2)
    for name, model in (("after", after), ("before", before)):
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
    torch.manual_seed(0)
    peft_model = get_peft_model(tiny_llama(tok, seed=1),
                                LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=False))
    peft_model.save_pretrained(root / "adapter")
    with open(root / "adapter" / "adapter_config.json") as f:
        config = json.load(f)
    config["base_model_name_or_path"] = str(root / "after")
    (root / "adapter" / "adapter_config.json").write_text(json.dumps(config))
    swapped = list(WORDS)
    swapped[0], swapped[1] = swapped[1], swapped[0]
    odd_tok = build_tokenizer(swapped)
    before.save_pretrained(root / "odd")
    odd_tok.save_pretrained(root / "odd")
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16)).save_pretrained(root / "bert")
    tok.save_pretrained(root / "bert")
    (root / "pickled").mkdir()
    before.save_pretrained(root / "pickled")
    tok.save_pretrained(root / "pickled")
    (root / "pickled" / "model.safetensors").unlink()  # transformers 5 only writes safetensors
    torch.save(before.state_dict(), root / "pickled" / "pytorch_model.bin")
    return root


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_sample_json_has_the_documented_keys(model_dirs, capsys):
    code, out, err = _run(
        capsys, "sample", "--after", str(model_dirs / "after"), "--before", str(model_dirs / "before"),
        "--prompt", "hello", "--prompt", "tell me a story", "--alpha", "1.5", "--samples", "2",
        "--max-new-tokens", "5", "--json",
    )
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 4 and all(REQUIRED_KEYS <= set(r) for r in rows)
    assert {(r["prompt"], r["alpha"]) for r in rows} == {("hello", 1.5), ("tell me a story", 1.5)}
    assert all(len(r["token_ids"]) == len(r["logprob_sampled"]) == len(r["logprob_before"]) for r in rows)


def test_adapter_dir_alone_uses_its_base_as_reference(model_dirs, capsys):
    code, out, err = _run(capsys, "sample", "--after", str(model_dirs / "adapter"), "--prompt", "hello",
                          "--alpha", "1", "--max-new-tokens", "4", "--greedy")
    assert code == 0, err
    assert "--- prompt 0 sample 0 | alpha 1 |" in out
    code2, out2, _ = _run(capsys, "sample", "--after", str(model_dirs / "after"),
                          "--adapter", str(model_dirs / "adapter"),
                          "--prompt", "hello", "--alpha", "1", "--max-new-tokens", "4", "--greedy")
    assert code2 == 0 and out2 == out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--after", "/no/such/dir", "--before", "/no/such/dir"], "does not exist"),
        (["--after", "{d}/after", "--before", "{d}/odd"], "incompatible tokenizers"),
        (["--after", "{d}/bert", "--before", "{d}/after"], "not a causal language model"),
        (["--after", "{d}/pickled", "--before", "{d}/after"], "--allow-pickle"),
        (["--after", "{d}/after"], "--before"),
    ],
)
def test_bad_input_exits_2_with_one_line(model_dirs, capsys, args, message):
    argv = ["sample", *[a.format(d=model_dirs) for a in args], "--prompt", "hi", "--alpha", "1"]
    code, _, err = _run(capsys, *argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err


def test_alpha_must_be_a_number(model_dirs, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["sample", "--after", str(model_dirs / "after"), "--before", str(model_dirs / "before"), "--prompt", "hi",
              "--alpha", "lots"])
    assert exc.value.code == 2
    assert "'lots' is not a number" in capsys.readouterr().err


def test_pickle_weights_load_only_when_allowed(model_dirs, capsys):
    code, out, err = _run(capsys, "sample", "--after", str(model_dirs / "pickled"),
                          "--before", str(model_dirs / "after"),
                          "--allow-pickle", "--prompt", "hi", "--alpha", "1", "--max-new-tokens", "3", "--json")
    assert code == 0, err
    assert len(out.splitlines()) == 1


def test_the_sampler_is_declared_once():
    """The measurement's sampler fields and `sample`'s flags take their defaults and help from the
    engine's SamplingConfig, and its rule refuses a bad value before any model loads."""
    from dataclasses import MISSING, fields

    from lda_monitor.cli import SAMPLE_FLAGS, build_parser
    from lda_monitor.core.measurement import Measurement
    from lda_monitor.engine.sampling_config import SamplingConfig

    engine = {f.name: f for f in fields(SamplingConfig)}
    for f in fields(Measurement):
        if f.name in SAMPLE_FLAGS:
            default = tuple(f.default_factory()) if f.default is MISSING else f.default
            assert default == engine[f.name].default, f.name
            if f.name != "seed":  # the measurement says how an evaluation derives its seeds
                assert f.metadata["help"].startswith(engine[f.name].metadata["help"]), f.name
    sample = build_parser().parse_args(["sample", "--after", "m", "--alpha", "1"])
    assert SamplingConfig.from_fields(vars(sample), alpha=1.0) == SamplingConfig(alpha=1.0)


def test_sample_refuses_a_bad_temperature_with_the_engine_rule(model_dirs, capsys):
    code, _, err = _run(capsys, "sample", "--after", str(model_dirs / "after"), "--before", str(model_dirs / "before"),
                        "--prompt", "hi", "--alpha", "1", "--temperature", "0")
    assert code == 2 and "temperature must be > 0" in err and len(err.strip().splitlines()) == 1
