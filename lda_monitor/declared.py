"""A setting declared once and composed into other configs: a dataclass field that takes its
default and help from the field of the same name in the class that declares it.

The measurement composes the sampler's knobs (:class:`~lda_monitor.engine.sampling_config.SamplingConfig`),
the audit the model-loading options (:class:`~lda_monitor.config.models.ModelOptions`), the server's
request limits the server options; each takes the declaration rather than a second copy of its
default and help text. Imports nothing of the package, so every layer may use it.
"""

from __future__ import annotations

from dataclasses import MISSING, field, fields


def declared_field(config_class, name: str, **metadata):
    """A dataclass field declared as ``config_class``'s field ``name`` (its default and help);
    ``metadata`` adds or overrides (a flag name, a metavar, a narrower help text). A tuple default
    becomes a list, which YAML files and repeatable flags give."""
    declared = {f.name: f for f in fields(config_class)}[name]
    meta = {**declared.metadata, **metadata}
    if declared.default_factory is not MISSING:
        return field(default_factory=declared.default_factory, metadata=meta)
    if isinstance(declared.default, tuple):
        return field(default_factory=lambda: list(declared.default), metadata=meta)
    return field(default=declared.default, metadata=meta)


def declared_help(config_class, name: str) -> str:
    """The help text ``config_class`` declares for its field ``name``."""
    return {f.name: f for f in fields(config_class)}[name].metadata["help"]
