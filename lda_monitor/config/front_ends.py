"""The front ends one config file drives (the training callback and ``audit-checkpoints``), and
what reads that file for either of them.

One YAML file holds the callback's and the audit's keys, so reading it for one front end must know
the other's keys (accepted with a note, where a typo is refused). This module knows both configs;
the front ends import it, never each other.
"""

from __future__ import annotations

from .audit import AuditConfig
from .files import FrontEnd, markdown_table, read_config_file
from .monitor import MonitorConfig

# In the config table's order.
FRONT_ENDS = (FrontEnd("the training callback", "callback", MonitorConfig),
              FrontEnd("audit-checkpoints", "audit", AuditConfig))


def file_values(path, config: type) -> dict:
    """The keys of a YAML config file that the front end of ``config`` (one of :data:`FRONT_ENDS`'
    classes) uses, paths resolved against the file."""
    return read_config_file(path, config, FRONT_ENDS)


def from_file(path, config: type, **overrides):
    """``config`` built from a YAML config file; ``overrides`` (keywords, command-line flags) win."""
    return config(**{**file_values(path, config), **overrides})


def config_table() -> str:
    """The config table of both front ends (:func:`~lda_monitor.config.files.markdown_table`)."""
    return markdown_table(FRONT_ENDS)
