"""Getting the monitor's metrics to every place the Trainer reports to, without disturbing it.

``trainer.log()`` is the wrong tool from inside a callback: called from ``on_step_end`` it
resets ``control.should_log`` (the step's loss row is then dropped), and TRL trainers override
it to flush their own buffered metrics into whatever row is being logged. The callback also
receives no trainer. Instead the monitor:

1. appends its own row ``{**metrics, "step": global_step}`` to ``state.log_history``;
2. replays an ``on_log`` event with its metrics to the other callbacks of the Trainer's
   ``CallbackHandler`` (TensorBoard, MLflow, the console printer, ...), saving and restoring
   every ``control.should_*`` flag around it, so no decision of the training loop changes;
3. logs to W&B directly when a run is active, under ``lda/...`` with ``train/global_step`` as
   the x-axis (WandbCallback would rename the keys to ``train/lda/...``).

The handler is found once, at ``on_train_begin``, as the ``self`` of the ``call_event`` frame
that invoked the callback.
"""

from __future__ import annotations

import dataclasses
import sys
import warnings

from transformers.trainer_callback import CallbackHandler

WANDB_STEP = "train/global_step"


def find_callback_handler(max_depth: int = 8) -> CallbackHandler | None:
    frame = sys._getframe(1)
    for _ in range(max_depth):
        if frame is None:
            return None
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, CallbackHandler):
            return candidate
        frame = frame.f_back
    return None


def _wandb_run():
    module = sys.modules.get("wandb")
    return getattr(module, "run", None) if module is not None else None


def _is_wandb_callback(callback) -> bool:
    return type(callback).__name__ == "WandbCallback"


class MetricEmitter:
    def __init__(self, owner, handler: CallbackHandler | None):
        self.owner, self.handler = owner, handler
        self._wandb_defined = False
        if handler is None:
            warnings.warn(
                "lda-monitor could not find the Trainer's callback handler; metrics go to "
                "state.log_history and W&B only", stacklevel=3,
            )

    def emit(self, args, state, control, metrics: dict[str, float], **kwargs) -> None:
        if not state.is_world_process_zero:
            return
        state.log_history.append({**metrics, "step": state.global_step})
        if self.handler is not None:
            saved = dataclasses.asdict(control)
            for callback in self.handler.callbacks:
                if callback is self.owner or _is_wandb_callback(callback):
                    continue
                callback.on_log(args, state, control, logs=dict(metrics), **kwargs)
            for name, value in saved.items():
                setattr(control, name, value)
        run = _wandb_run()
        if run is not None:
            if not self._wandb_defined:
                run.define_metric(WANDB_STEP)
                run.define_metric("lda/*", step_metric=WANDB_STEP)
                self._wandb_defined = True
            run.log({**metrics, WANDB_STEP: state.global_step})

    def table(self, state, key: str, columns: list[str], rows: list[list]) -> None:
        run = _wandb_run()
        if run is None or not state.is_world_process_zero or not rows:
            return
        import wandb

        run.log({key: wandb.Table(columns=columns, data=rows), WANDB_STEP: state.global_step})

    def config(self, config: dict) -> None:
        run = _wandb_run()
        if run is not None:
            run.config.update({"lda_monitor": config}, allow_val_change=True)
