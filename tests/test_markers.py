"""The marker filters the documentation gives are true: ``-m "not real_model"`` leaves out every
test that loads the embedded model, and a misspelt or unregistered marker is an error rather than
a test that silently escapes a filter."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_an_unmarked_test_cannot_load_the_embedded_model():
    from lda_monitor.engine.embedded import EMBEDDED_NAME
    from lda_monitor.engine.models import load_model

    with pytest.raises(RuntimeError, match="mark it @pytest.mark.real_model"):
        load_model(EMBEDDED_NAME)


def test_an_unregistered_marker_fails_collection(tmp_path):
    test = tmp_path / "test_typo.py"
    test.write_text(textwrap.dedent("""
        import pytest

        @pytest.mark.real_modle
        def test_x():
            pass
    """))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c",
                           str(REPO / "pyproject.toml"), "--rootdir", str(tmp_path), str(test)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "'real_modle' not found in `markers` configuration option" in done.stdout + done.stderr
