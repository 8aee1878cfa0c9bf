"""A griffe extension for the API pages: the package's docstrings are written in reStructuredText
habits (``:class:`~x.Y``` roles, ``::`` before a literal block, definition-list sections such as
"When it evaluates" over an indented paragraph) and mkdocstrings reads Markdown. Rewriting those
three habits here lets the docstrings stay as they are for ``help()`` and editors while the site
shows plain code names, colons and bold section titles instead of raw markup."""

from __future__ import annotations

import re

from griffe import Extension, Object

ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`(~?)([^`<]*?)(?:\s*<([^>]+)>)?`")


def _role(match: re.Match) -> str:
    short, text, target = match.groups()
    name = text.strip() or (target or "")
    return f"`{name.rsplit('.', 1)[-1] if short else name}`"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def markdown(text: str) -> str:
    """``text`` (a docstring) with roles, ``::`` and definition-list sections made Markdown."""
    text = ROLE.sub(_role, text)
    lines = [re.sub(r"(\S)::$", r"\1:", line) for line in text.splitlines() if line.strip() != "::"]
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        following = lines[i + 1] if i + 1 < len(lines) else ""
        is_title = (line.strip() and _indent(line) == 0 and not line.rstrip().endswith(":")
                    and (not out or not out[-1].strip()) and following.strip()
                    and _indent(following) >= 4)
        if not is_title:
            out.append(line)
            i += 1
            continue
        out += [f"**{line.strip()}**", ""]
        i += 1
        width = _indent(lines[i])
        while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) >= width):
            out.append(lines[i][width:] if lines[i].strip() else "")
            i += 1
    return "\n".join(out)


class RstToMarkdown(Extension):
    def on_instance(self, *, obj: Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
