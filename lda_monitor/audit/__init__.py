"""The offline front end: ``audit-checkpoints`` (:mod:`.auditor`, :mod:`.checkpoints`; its config is
:class:`~lda_monitor.config.audit.AuditConfig`), ``rejudge`` (:mod:`.rejudge`), and the files both
leave behind (:mod:`.outputs`, :mod:`.report`). Names are resolved lazily so the config stays light."""

_EXPORTS = {
    "audit_checkpoints": "lda_monitor.audit.auditor", "watch_checkpoints": "lda_monitor.audit.auditor",
    "AuditConfig": "lda_monitor.config.audit",
}


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
