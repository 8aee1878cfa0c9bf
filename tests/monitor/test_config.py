"""Configuration: validation messages, YAML configs, prompt sources, the lazy export."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import Dataset

from lda_monitor import LDAMonitorCallback
from lda_monitor.config.monitor import MonitorConfig
from lda_monitor.errors import UserInputError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "configs" / "monitor-example.yaml"


def test_bad_values_are_all_reported_with_their_keys():
    with pytest.raises(UserInputError) as err:
        LDAMonitorCallback(prompts=["hi"], judge="regex:x", every_n_steps=0, trigger="epoch", alpha="cosine:20",
                           guardrail_action="halt", max_new_tokens=0, reference_dtype="float8")
    message = str(err.value)
    for key in ("every_n_steps", "trigger", "alpha", "guardrail_action", "max_new_tokens", "reference_dtype"):
        assert key in message
    assert "'cosine:START->END'" in message and "('alert', 'stop')" in message


def test_missing_and_misspelled_keys_name_the_fix():
    with pytest.raises(UserInputError, match="prompts: required"):
        LDAMonitorCallback(judge="regex:x")
    with pytest.raises(UserInputError, match="did you mean 'every_n_steps'"):
        LDAMonitorCallback(prompts=["hi"], judge="regex:x", every_n_step=10)
    with pytest.raises(UserInputError, match="^judge: unknown judge type 'regx'.*did you mean 'regex'"):
        LDAMonitorCallback(prompts=["hi"], judge="regx")


def test_the_example_config_loads(tmp_path):
    monitor = LDAMonitorCallback.from_config(EXAMPLE)
    assert monitor.config.every_n_steps == 50 and monitor.config.alpha == "cosine:20->1"
    assert [item.category for item in monitor.items] == ["everyday", "everyday", "deployment-context",
                                                          "deployment-context"]
    assert monitor.judge.name == "regex"
    assert LDAMonitorCallback.from_config(EXAMPLE, every_n_steps=7).config.every_n_steps == 7


def test_yaml_paths_resolve_against_the_config_file(tmp_path):
    (tmp_path / "suite.jsonl").write_text(
        '{"prompt": "hello", "category": "a"}\n{"messages": [{"role": "user", "content": "hi"}]}\n')
    (tmp_path / "monitor.yaml").write_text("prompts: suite.jsonl\njudge: 'substring:hate'\nevery_n_step: 3\n")
    with pytest.raises(UserInputError, match="monitor.yaml: unknown config keys 'every_n_step'"):
        LDAMonitorCallback.from_config(tmp_path / "monitor.yaml")
    (tmp_path / "monitor.yaml").write_text("prompts: suite.jsonl\njudge: 'substring:hate'\nevery_n_steps: 3\n")
    monitor = LDAMonitorCallback.from_config(tmp_path / "monitor.yaml")
    assert [(i.prompt, i.category) for i in monitor.items] == [("hello", "a"),
                                                               (({"role": "user", "content": "hi"},), None)]


def test_prompts_from_a_dataset_column():
    data = Dataset.from_list([{"q": "hello", "topic": "x"}, {"q": "what is it ?", "topic": "y"}])
    monitor = LDAMonitorCallback(prompts=data, prompt_column="q", category_column="topic", judge="regex:x")
    assert [(i.prompt, i.category) for i in monitor.items] == [("hello", "x"), ("what is it ?", "y")]
    assert "prompts" not in monitor.state()["args"], "a Dataset is not JSON: left out of the saved args"


def test_saved_args_rebuild_an_equal_config():
    monitor = LDAMonitorCallback(prompts=["hi", [{"role": "user", "content": "yo"}]], judge="regex:x",
                                 every_n_steps=5, alpha="linear:3->1")
    args = json.loads(json.dumps(monitor.state()["args"]))
    assert LDAMonitorCallback(**args).config == monitor.config


def test_import_stays_light_and_the_callback_is_exported_lazily():
    code = ("import sys, lda_monitor; assert 'torch' not in sys.modules, 'import pulled in torch'; "
            "from lda_monitor import LDAMonitorCallback; print(LDAMonitorCallback.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "lda_monitor.monitor.callback"
    assert MonitorConfig.__dataclass_fields__["alpha"].metadata["help"]
