"""Errors a user can cause, kept apart from bugs.

Everything raised as a :class:`UserInputError` carries one sentence naming the problem and the
fix; the command line prints it as a single line and exits non-zero instead of a traceback.
"""


class UserInputError(ValueError):
    """A bad path, model, config value or combination of inputs supplied by the user."""


class IncompatibleTokenizersError(UserInputError):
    """The before and after models do not share a token space, so their logits cannot be combined."""
