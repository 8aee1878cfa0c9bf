"""Getting the monitor's metrics to everything the Trainer reports to, without disturbing it.

``trainer.log()`` is the wrong tool from inside a callback: called from ``on_step_end`` it
resets ``control.should_log`` (that step's loss row is then never logged), and TRL trainers
override it to flush their own buffered metrics into whatever row is being logged. A callback
also receives no trainer. Instead :class:`MetricEmitter`:

1. appends its own row ``{**metrics, "step": global_step}`` to ``state.log_history`` (saved in
   every checkpoint's ``trainer_state.json``, like the Trainer's rows);
2. replays an ``on_log`` event carrying only the monitor's metrics to the other callbacks of
   the Trainer's ``CallbackHandler`` - the reporting integrations chosen with ``report_to``
   (TensorBoard, MLflow, ...) and any user callback - saving and restoring every
   ``control.should_*`` flag around it, so no decision of the training loop changes. The
   integrations log at ``state.global_step``, the right step. Most of them (TensorBoard, Comet,
   Trackio, ClearML, Neptune, ...) rename every key of an ``on_log`` event that does not start
   with ``eval_``/``test_`` to ``train/<key>`` (``transformers.integrations.rewrite_logs``), as
   they do for the loss: there the names read ``train/lda/...``. That is the one documented
   difference; renaming inside those integrations would mean reaching into their writers.
   ``state.log_history`` and W&B (below) carry ``lda/...``.

W&B is skipped here: :mod:`lda_monitor.sinks.wandb_sink` logs to it directly (with tables), and the
``WandbCallback`` would log the same scalars a second time under ``train/lda/...``.

The handler is found once, at ``on_train_begin``, by what holds the callback: the
``CallbackHandler`` whose ``callbacks`` list contains it and whose model is the model of the event
(the Trainer passes its handler's own), found with :func:`gc.get_referrers` - object identity, not
the call stack, so a callback reused by a second Trainer finds the one training now. If none is
found (a custom training loop), metrics still reach ``state.log_history`` and W&B, with a warning.
"""

from __future__ import annotations

import dataclasses
import gc
import warnings

from transformers.trainer_callback import CallbackHandler

_HANDLER_KWARGS = ("model", "processing_class", "optimizer", "lr_scheduler", "train_dataloader", "eval_dataloader")


def find_callback_handler(callback, model) -> CallbackHandler | None:
    """The ``CallbackHandler`` that holds ``callback`` in its ``callbacks`` list and drives ``model``
    (see the module docstring), or None."""

    def handlers(holder):
        # An instance's attributes are reached through its __dict__ or, with inline attribute
        # values, through the instance itself: both are tried.
        for owner in gc.get_referrers(holder):
            if isinstance(owner, CallbackHandler):
                yield owner
            elif isinstance(owner, dict):
                yield from (h for h in gc.get_referrers(owner) if isinstance(h, CallbackHandler))

    for holder in gc.get_referrers(callback):  # a list refers to the callback only by holding it
        if isinstance(holder, list):
            for handler in handlers(holder):
                if handler.callbacks is holder and handler.model is model:
                    return handler
    return None


def _is_wandb_callback(callback) -> bool:
    return type(callback).__name__ == "WandbCallback"


class MetricEmitter:
    """Writes metric rows to ``log_history`` and replays them as ``on_log`` events."""

    def __init__(self, owner, handler: CallbackHandler | None):
        self.owner, self.handler = owner, handler
        if handler is None:
            warnings.warn(
                "lda-monitor could not find the Trainer's callback handler (custom training loop?); "
                "its metrics go to state.log_history and W&B only, not to other report_to backends",
                stacklevel=3,
            )

    def emit(self, args, state, control, metrics: dict[str, float]) -> None:
        """Log ``metrics`` at ``state.global_step``. Raises after trying every callback if any
        of them failed (the caller counts that as a monitoring error)."""
        state.log_history.append({**metrics, "step": state.global_step})
        if self.handler is None:
            return
        kwargs = {name: getattr(self.handler, name, None) for name in _HANDLER_KWARGS}
        saved = dataclasses.asdict(control)
        failures = []
        try:
            for callback in self.handler.callbacks:
                if callback is self.owner or _is_wandb_callback(callback):
                    continue
                try:
                    callback.on_log(args, state, control, logs=dict(metrics), **kwargs)
                except Exception as exc:  # one broken backend must not starve the others
                    failures.append(f"{type(callback).__name__}: {type(exc).__name__}: {exc}")
        finally:
            for name, value in saved.items():
                setattr(control, name, value)
        if failures:
            raise RuntimeError("reporting callbacks failed on lda-monitor metrics: " + "; ".join(failures))
