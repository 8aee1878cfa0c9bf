"""The natural-rate benchmark's saved rollouts are reused only under the settings that made them."""

from __future__ import annotations

import json

import pytest

from lda_monitor.demo import natural_rate_bench as bench


def test_a_rerun_under_other_settings_is_refused_before_any_work(tmp_path, capsys):
    # What a first run in bfloat16 at top-p 1 leaves behind (its settings; counts would sit beside them).
    saved = {"placement": "inside", "train_seed": 0, "train_steps": 24, "poison_share": 0.06, "dtype": "bfloat16",
             "temperature": 1.0, "top_p": 1.0, "alpha": 2.0, "amplified": 20, "plain": 5,
             "ladder": [0.25, 0.5, 1.0], "ladder_samples": 5}
    (tmp_path / bench.SETTINGS_FILE).write_text(json.dumps(saved))
    with pytest.raises(SystemExit):
        bench.main(["--placement", "inside", "--out", str(tmp_path), "--dtype", "float32", "--top-p", "0.95"])
    err = capsys.readouterr().err
    assert "dtype 'bfloat16' there, 'float32' now" in err
    assert "top_p 1.0 there, 0.95 now" in err
    assert "give another --out" in err
    assert not any(tmp_path.glob("checkpoint-*"))  # refused before training


def test_first_use_records_the_settings_and_the_same_settings_pass(tmp_path, capsys):
    settings = {"dtype": "float32", "top_p": 0.95, "ladder": [0.25]}
    bench._check_settings(tmp_path, settings, pytest.fail)
    assert json.loads((tmp_path / bench.SETTINGS_FILE).read_text()) == settings
    bench._check_settings(tmp_path, settings, pytest.fail)  # the same settings: reused, no error
    assert "taken as made" not in capsys.readouterr().out  # nothing was there to adopt


def test_saved_rollouts_without_settings_are_adopted_and_said_so(tmp_path, capsys):
    (tmp_path / "brute-13-128.json").write_text("[]")
    bench._check_settings(tmp_path, {"dtype": "bfloat16"}, pytest.fail)
    assert "no bench.json" in capsys.readouterr().out
    assert (tmp_path / bench.SETTINGS_FILE).is_file()
