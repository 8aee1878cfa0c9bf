"""mkdocs hooks: the documentation's tables that are generated from the code are generated at
build time, so the site cannot drift from the declarations (a hand-copied table could).

A page asks for a table with an HTML comment on a line of its own, e.g.
``<!-- generated: config_table -->``; GitHub's renderer hides the comment, the site shows the
table. An unknown name stops the build: a typo must not publish a page with the table missing.
"""

from __future__ import annotations

import re
from collections.abc import Callable

MARKER = re.compile(r"^<!-- generated: (\w+) -->$", flags=re.M)


def _config_table() -> str:
    from lda_monitor.config.front_ends import config_table

    return config_table()


def _metric_table() -> str:
    from lda_monitor.core.summary import metric_table

    return metric_table()


GENERATORS: dict[str, Callable[[], str]] = {"config_table": _config_table, "metric_table": _metric_table}


def expand(markdown: str) -> str:
    """``markdown`` with every generated-table marker replaced by the table it names."""

    def table(match: re.Match) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise ValueError(f"unknown generated table {name!r} in a docs page; known: {', '.join(GENERATORS)}")
        return GENERATORS[name]()

    return MARKER.sub(table, markdown)


def on_page_markdown(markdown: str, **kwargs) -> str:
    return expand(markdown)
