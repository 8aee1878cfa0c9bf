"""Finding the Trainer's callback handler by what holds the callback (no frame inspection)."""

from __future__ import annotations

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import CallbackHandler

from lda_monitor.monitor.trainer_logging import find_callback_handler


def handler_of(callbacks, model) -> CallbackHandler:
    return CallbackHandler(callbacks, model, None, None, None)


def test_the_handler_that_holds_the_callback_and_drives_the_model_is_found():
    callback, first_model, second_model = TrainerCallback(), torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    first = handler_of([callback], first_model)
    second = handler_of([callback], second_model)  # the same callback reused by a second Trainer
    vars(second)  # a materialised instance dict is one more hop: still found
    assert find_callback_handler(callback, first_model) is first
    assert find_callback_handler(callback, second_model) is second


def test_no_handler_when_none_holds_the_callback_or_drives_the_model():
    callback, model = TrainerCallback(), torch.nn.Linear(1, 1)
    other = handler_of([TrainerCallback()], model)  # drives the model, does not hold the callback
    assert other.callbacks and find_callback_handler(callback, model) is None
    holder = handler_of([callback], torch.nn.Linear(1, 1))  # holds it, drives another model
    assert holder.callbacks and find_callback_handler(callback, model) is None
