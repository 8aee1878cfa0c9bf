"""The ``lda`` provider: ``inspect eval`` on a 3-sample task gives, at each alpha, exactly the text
``lda-monitor sample`` gives for the same prompt, seed and settings (float32, tiny models saved to
disk), with our judge scoring it as an inspect scorer."""

from __future__ import annotations

import json

import pytest
import torch

from lda_monitor.cli import main
from lda_monitor.judges import build_judge
from tests.tiny import build_tokenizer, tiny_llama

inspect_ai = pytest.importorskip("inspect_ai", reason="inspect_ai is not installed: pip install -e '.[inspect]'")
from inspect_ai import Task  # noqa: E402
from inspect_ai.dataset import Sample  # noqa: E402
from inspect_ai.solver import generate  # noqa: E402

import lda_monitor.inspect  # noqa: E402

QUESTIONS = ["hello", "tell me a story about the cat", "what is the capital of france ?"]
JUDGE = "regex:\\b(the|a|cat)\\b"
SEED, TOKENS = 7, 24


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    tok = build_tokenizer()
    for name, seed in (("after", 1), ("before", 2)):
        tiny_llama(tok, seed=seed).save_pretrained(root / name)
        tok.save_pretrained(root / name)
    return root


def _inspect(model_dirs, tmp_path, alpha: float, **generate_config):
    task = Task(dataset=[Sample(input=q, target="") for q in QUESTIONS], solver=generate(),
                scorer=lda_monitor.inspect.scorer(JUDGE))
    (log,) = inspect_ai.eval(task, model=f"lda/{model_dirs / 'after'}",
                             model_args={"before": str(model_dirs / "before"), "alpha": alpha, "dtype": "float32",
                                         "device": "cpu"},
                             seed=SEED, max_tokens=TOKENS, log_dir=str(tmp_path / "logs"), display="none",
                             **generate_config)
    assert log.status == "success", log.error
    return {s.input: s for s in log.samples}


def _cli(model_dirs, capsys, alpha: float, prompt: str, *flags) -> str:
    code = main(["sample", "--after", str(model_dirs / "after"), "--before", str(model_dirs / "before"),
                 "--alpha", str(alpha), "--seed", str(SEED), "--max-new-tokens", str(TOKENS), "--dtype", "float32",
                 "--device", "cpu", "--prompt", prompt, "--json", *flags])
    out = capsys.readouterr().out
    assert code == 0
    (record,) = [json.loads(line) for line in out.splitlines()]
    return record["completion"]


@pytest.mark.parametrize(("generate_config", "flags"), [({}, ()), ({"temperature": 0.8, "top_p": 0.9},
                                                                    ("--temperature", "0.8", "--top-p", "0.9"))])
def test_inspect_eval_samples_what_lda_monitor_sample_samples(model_dirs, tmp_path, capsys, generate_config, flags):
    torch.set_num_threads(1)
    texts = {}
    for alpha in (2.0, 0.0, -1.0):  # amplified, the policy, the reference
        samples = _inspect(model_dirs, tmp_path, alpha, **generate_config)
        texts[alpha] = [samples[q].output.completion for q in QUESTIONS]
        assert texts[alpha] == [_cli(model_dirs, capsys, alpha, q, *flags) for q in QUESTIONS]
        # Our judge as the inspect scorer: the judge alone gives the same verdicts on the same texts.
        verdicts = build_judge(JUDGE)(QUESTIONS, texts[alpha])
        assert [samples[q].scores["lda_regex"].value for q in QUESTIONS] == \
               ["C" if v.flagged else "I" for v in verdicts]
    assert texts[2.0] != texts[0.0] != texts[-1.0], "alpha changes what is sampled"


def test_unknown_model_args_are_refused_with_the_ones_accepted(model_dirs, tmp_path):
    task = Task(dataset=[Sample(input="hello")], solver=generate())
    with pytest.raises(Exception, match="unknown model arg.*'alhpa'.*alpha"):
        inspect_ai.eval(task, model=f"lda/{model_dirs / 'after'}", model_args={"alhpa": 2},
                        log_dir=str(tmp_path / "logs"), display="none")
