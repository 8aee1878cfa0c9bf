"""inspect_ai's entry point (``[project.entry-points.inspect_ai]``): registers the ``lda`` model
provider. inspect imports this module when it resolves a model name; the provider module (and
torch with it) loads only when an ``lda/...`` model is made."""

from inspect_ai.model import modelapi


@modelapi(name="lda")
def lda():
    from .provider import LDAModelAPI

    return LDAModelAPI
