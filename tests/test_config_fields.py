"""One declaration, three views: flags, YAML keys and the docs table come from the fields (the table's
fill-in on the docs page is checked in tests/test_docs.py)."""

from __future__ import annotations

from dataclasses import fields

import pytest

from lda_monitor.cli import build_parser
from lda_monitor.config.audit import AuditConfig
from lda_monitor.config.files import read_config_file
from lda_monitor.config.front_ends import FRONT_ENDS
from lda_monitor.config.models import ModelOptions
from lda_monitor.config.monitor import MonitorConfig
from lda_monitor.config.server import ServerOptions
from lda_monitor.core.config_fields import given_fields
from lda_monitor.core.measurement import SAMPLING_FIELDS, Measurement
from lda_monitor.errors import UserInputError
from lda_monitor.monitor.callback import LDAMonitorCallback


def test_both_front_ends_extend_the_one_measurement():
    shared = [f.name for f in fields(Measurement)]
    for config in (MonitorConfig, AuditConfig):
        assert [f.name for f in fields(config)][: len(shared)] == shared


def test_every_measurement_field_is_an_audit_flag_and_sampling_fields_are_sample_flags():
    parser = build_parser()
    audit = parser.parse_args(["audit-checkpoints", "run", "--out", "o", "--top-p", "0.9", "--temperature", "0.7",
                               "--system", "be nice", "--stop", "a", "--stop", "b", "--no-chat-template",
                               "--plain-samples-per-prompt", "0", "--alphas", "0,1.5", "--alpha-horizon", "100"])
    assert (audit.top_p, audit.temperature, audit.system_prompt, audit.stop_strings, audit.chat_template,
            audit.plain_samples_per_prompt, audit.alphas, audit.alpha_horizon) == \
           (0.9, 0.7, "be nice", ["a", "b"], False, 0, (0.0, 1.5), 100)
    assert not hasattr(audit, "seed"), "a flag left out must not override the config file"
    sample = parser.parse_args(["sample", "--after", "m", "--alpha", "1", "--top-k", "5", "--seed", "3"])
    assert (sample.top_k, sample.seed) == (5, 3)
    options = {a.dest for a in parser._subparsers._group_actions[0].choices["audit-checkpoints"]._actions}
    assert {f.name for f in fields(Measurement)} - {"prompt_column", "category_column"} <= options
    sample_options = {a.dest for a in parser._subparsers._group_actions[0].choices["sample"]._actions}
    assert set(SAMPLING_FIELDS) <= sample_options


def test_one_file_for_both_front_ends(tmp_path, capsys):
    path = tmp_path / "lda.yaml"
    path.write_text("prompts: [hi]\njudge: 'regex:x'\ntemperature: 0.5\nevery_n_steps: 7\ndtype: float32\n")
    audit = read_config_file(path, AuditConfig, FRONT_ENDS)
    assert audit == {"prompts": ["hi"], "judge": "regex:x", "temperature": 0.5, "dtype": "float32"}
    assert "ignored by audit-checkpoints: every_n_steps" in capsys.readouterr().err
    monitor = LDAMonitorCallback.from_config(path).config
    assert (monitor.temperature, monitor.every_n_steps) == (0.5, 7)
    assert "ignored by the training callback: dtype" in capsys.readouterr().err
    path.write_text("prompts: [hi]\njudge: 'regex:x'\ntemperture: 0.5\n")
    with pytest.raises(UserInputError, match="'temperture' \\(did you mean 'temperature'\\?\\)"):
        read_config_file(path, AuditConfig, FRONT_ENDS)


def test_audit_flags_win_over_the_file(tmp_path, monkeypatch):
    import lda_monitor.audit.auditor as audit_module
    import lda_monitor.audit.checkpoints as checkpoints_module
    from lda_monitor.cli import main

    seen = {}
    monkeypatch.setattr(audit_module, "audit_checkpoints", lambda paths, config: seen.setdefault("c", config) and [])
    monkeypatch.setattr(checkpoints_module, "discover", lambda paths: ([], []))
    path = tmp_path / "lda.yaml"
    path.write_text("prompts: [hi]\njudge: 'regex:x'\ntemperature: 0.5\ntop_p: 0.8\nevery_n_steps: 7\n")
    assert main(["audit-checkpoints", str(tmp_path), "--config", str(path), "--out", str(tmp_path / "o"),
                 "--temperature", "0.9"]) == 0
    config = seen["c"]
    assert (config.temperature, config.top_p, config.prompts) == (0.9, 0.8, ["hi"])


def test_horizon_says_where_it_came_from():
    base = dict(prompts=["hi"], judge="regex:x")
    assert Measurement(**base).horizon(40) == (40, "the run's max_steps")
    assert Measurement(**base, alpha_horizon=9).horizon(40) == (9, "alpha_horizon in the config")


def test_serve_options_come_from_their_declaration(monkeypatch):
    """``serve``'s flags are ServerOptions' and ModelOptions' fields, what is left out keeps their
    defaults, and the models' flags reach load_pair under its own argument names."""
    from lda_monitor import cli
    from lda_monitor.engine import models as models_module
    from lda_monitor.server import Limits

    args = build_parser().parse_args(["serve", "--after", "m", "--adapter", "lora", "--base-model", "b",
                                      "--max-prompts", "3", "--batch-wait-ms", "2.5", "--seeded-decoding", "alone",
                                      "--log-level", "debug", "--peft-strategy", "two-pass", "--allow-pickle"])
    server = ServerOptions(**given_fields(args, ServerOptions))
    assert server == ServerOptions(max_prompts=3, batch_wait_ms=2.5, seeded_decoding="alone",
                                   log_level="debug")
    assert (server.host, server.port, server.max_prompt_tokens, server.max_samples) == ("127.0.0.1", 8000, 2048, 16)
    assert Limits() == Limits(max_prompt_tokens=2048, max_prompts=64, max_samples=16)
    seen = {}

    def fake_load_pair(after, **kwargs):
        seen.update(after=after, **kwargs)
        raise UserInputError("stop here")

    monkeypatch.setattr(models_module, "load_pair", fake_load_pair)
    with pytest.raises(UserInputError, match="stop here"):
        cli._load_pair(ModelOptions(**given_fields(args, ModelOptions)))
    assert seen == dict(after="m", before=None, adapter="lora", base="b", device=seen["device"], dtype="auto",
                        peft_strategy="two-pass", allow_pickle=True, trust_remote_code=False)
    assert seen["device"] in ("cpu", "cuda")


@pytest.mark.parametrize("argv, message", [
    (["--before", "b", "--adapter", "a"], "not allowed with argument"),
    (["--peft-strategy", "fast"], "invalid choice: 'fast'"),
    (["--log-level", "loud"], "invalid choice: 'loud'"),
    ([], "the following arguments are required: --after"),
])
def test_serve_refuses_bad_model_and_server_flags(argv, message, capsys):
    base = [] if "--after" in message else ["--after", "m"]
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["serve", *base, *argv])
    assert exc.value.code == 2 and message in capsys.readouterr().err
