"""``lda-monitor serve``: the reference LDA server's HTTP API and an OpenAI-compatible API on this
package's engine.

Needs the ``serve`` extra (FastAPI, uvicorn); nothing else in the package imports this.
"""

from .app import create_app
from .state import Limits

__all__ = ["Limits", "create_app"]
