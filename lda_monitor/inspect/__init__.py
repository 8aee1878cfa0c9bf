"""inspect_ai integration: our pair as an inspect model, our judges as inspect scorers.

* ``inspect eval task.py --model lda/AFTER -M before=REF -M alpha=2``: the ``lda`` model provider
  (:mod:`.provider`, registered through inspect's ``inspect_ai`` entry point) samples the
  amplified pair in-process, no server; ``-M alpha=0`` is the policy, ``-M alpha=-1`` the
  reference.
* :func:`scorer`: any of our judge specs as an inspect scorer (``scorer("regex:...")``).
* The other way round, ``judge="inspect:package.module:function"`` runs an inspect scorer as our
  judge (:mod:`lda_monitor.judges.inspect_scorer`).

Nothing here imports inspect_ai until it is used, so ``import lda_monitor`` works without it.
"""

from .scorer import scorer

__all__ = ["scorer"]
