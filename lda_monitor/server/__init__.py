"""``lda-monitor serve``: the reference LDA server's HTTP API on this package's engine.

Needs the ``serve`` extra (FastAPI, uvicorn); nothing else in the package imports this.
"""

from .app import Limits, create_app

__all__ = ["Limits", "create_app"]
