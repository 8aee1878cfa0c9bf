"""inspect_ai tests run only where it is installed (the ``inspect`` extra): CI must install it."""

import pytest

pytest.importorskip("inspect_ai", reason="inspect_ai is not installed: pip install -e '.[inspect]'")
