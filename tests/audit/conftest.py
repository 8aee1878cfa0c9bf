"""Fixtures shared by the audit tests that run a Trainer and audit its checkpoints."""

from __future__ import annotations

import pytest
import yaml


@pytest.fixture(scope="module")
def config_file(request, tmp_path_factory):
    """The test module's ``CONFIG`` as one YAML file, read by both the callback and the audit."""
    path = tmp_path_factory.mktemp("config") / "lda.yaml"
    path.write_text(yaml.safe_dump(request.module.CONFIG))
    return path
