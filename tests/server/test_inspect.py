"""inspect_ai against the server, as its README commands run it (the ``inspect`` extra installs
it; the test is skipped where it is not installed).

``openai/lda`` goes through the Responses API (inspect treats names it does not know as OpenAI
reasoning models), ``openai-api/lda/lda`` through chat completions; each answer's ``alpha``
extra, kept in inspect's log of the call, shows which amplification the server used. inspect
0.3.285 sends ``extra_body`` on chat completions only, so on the Responses API alpha travels as
the ``alpha`` query parameter (``-M default_query``, a model arg of inspect's OpenAI client) or
the ``X-LDA-Alpha`` header (``--extra-headers``).
"""

from __future__ import annotations

import pytest
import torch

from lda_monitor.engine.pairs import TwoModelPair
from tests.server.helpers import start_server
from tests.tiny import tiny_llama

inspect_ai = pytest.importorskip("inspect_ai")
pytest.importorskip("uvicorn")

from lda_monitor.server import create_app  # noqa: E402

TASK = '''
from inspect_ai import Task, task
from inspect_ai.dataset import Sample
from inspect_ai.scorer import includes
from inspect_ai.solver import generate


@task
def two_questions():
    return Task(dataset=[Sample(input="tell me a story about the cat", target="cat"),
                         Sample(input="what is water ?", target="water")],
                solver=generate(), scorer=includes())
'''


@pytest.mark.parametrize(("model", "options", "alpha"), [
    ("openai/lda", {}, 1.5),  # extra_body is dropped on the Responses API: the server's --alpha
    ("openai-api/lda/lda", {}, 4.0),
    ("openai/lda", {"model_args": {"default_query": {"alpha": 3}}}, 3.0),
    ("openai/lda", {"extra_headers": {"X-LDA-Alpha": "2.5"}}, 2.5),
    ("openai/lda", {"model_args": {"default_query": {"alpha": 3}}, "extra_headers": {"X-LDA-Alpha": "2.5"}}, 3.0),
])
def test_inspect_eval_runs_against_the_server(tokenizer, tmp_path, monkeypatch, model, options, alpha):
    torch.set_num_threads(1)
    monkeypatch.setenv("OPENAI_API_KEY", "unused")
    monkeypatch.setenv("LDA_API_KEY", "unused")
    (tmp_path / "task.py").write_text(TASK)
    monkeypatch.chdir(tmp_path)  # inspect globs task files relative to the working directory
    pair = TwoModelPair(tiny_llama(tokenizer, seed=11), tiny_llama(tokenizer, seed=12), tokenizer)
    server, thread, url = start_server(create_app(pair, model_after="a", model_before="b", alpha=1.5))
    try:
        (log,) = inspect_ai.eval("task.py", model=model, model_base_url=f"{url}/v1", max_tokens=8,
                                 temperature=0, extra_body={"alpha": 4}, log_dir=str(tmp_path / "logs"),
                                 display="none", **options)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert log.status == "success", log.error
    assert len(log.samples) == 2 and all(s.output.completion for s in log.samples)
    calls = [e.call for s in log.samples for e in s.events if e.event == "model"]
    assert [c.response["alpha"] for c in calls] == [alpha, alpha]
