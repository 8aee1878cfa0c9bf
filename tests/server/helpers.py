"""Builders the server tests share: a probed pair, a uvicorn on 127.0.0.1, the tiny vocabulary's stops."""

from __future__ import annotations

import threading
import time

from lda_monitor.engine.pairs import TwoModelPair

BREAKS_ENGINE = "bug"  # a prompt containing this word makes the engine raise mid-generation


class ProbedPair(TwoModelPair):
    """Counts decode batches (one session each) and fails on prompts holding ``BREAKS_ENGINE``."""

    def __init__(self, *args):
        super().__init__(*args)
        self.sessions = 0
        self.poison_id = self.tokenizer.convert_tokens_to_ids(BREAKS_ENGINE)

    def open(self, need_before=True):
        self.sessions += 1
        session, pair = super().open(need_before), self
        forward = session.forward

        def checked(input_ids, attention_mask, position_ids):
            if input_ids.shape[1] > 1 and (input_ids == pair.poison_id).any():  # prompts only, at prefill
                raise RuntimeError("planted engine failure")
            return forward(input_ids, attention_mask, position_ids)

        session.forward = checked
        return session


def start_server(app):
    import uvicorn  # the test modules skip themselves first where it is missing

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    return server, thread, f"http://127.0.0.1:{port}"


def stop_ids(tokenizer) -> list[int]:
    """ChatML ends a turn with <|im_end|>; <|endoftext|> ends the document."""
    return tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
