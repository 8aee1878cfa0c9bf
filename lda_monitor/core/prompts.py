"""Prompt suites: what the monitor asks the model, from lists, YAML/JSONL files or datasets.

A suite is a list of :class:`PromptItem`; an item's optional ``category`` lets rates be reported
per category (e.g. the domain a backdoor targets versus a control domain). Every malformed
entry fails loudly with its file, line or index, since a silently dropped prompt changes every
rate computed from the suite.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserInputError


@dataclass(frozen=True)
class PromptItem:
    id: str
    prompt: str | tuple  # plain text, or a tuple of {"role", "content"} chat messages
    category: str | None = None
    metadata: dict = field(default_factory=dict, compare=False)


def _messages(value, where: str) -> tuple:
    if not isinstance(value, list) or not value:
        raise UserInputError(f"{where}: 'messages' must be a non-empty list of {{role, content}}")
    for m in value:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise UserInputError(f"{where}: every message needs string 'role' and 'content', got {m!r}")
    return tuple(dict(m) for m in value)


def _item(entry, index: int, where: str, category: str | None = None) -> PromptItem:
    if isinstance(entry, str):
        return PromptItem(id=f"p{index}", prompt=entry, category=category)
    if isinstance(entry, list):
        return PromptItem(id=f"p{index}", prompt=_messages(entry, where), category=category)
    if isinstance(entry, dict):
        if "messages" in entry:
            prompt = _messages(entry["messages"], where)
        elif isinstance(entry.get("prompt"), str):
            prompt = entry["prompt"]
        elif isinstance(entry.get("prompt"), list):
            prompt = _messages(entry["prompt"], where)
        else:
            raise UserInputError(
                f"{where}: an entry needs 'prompt' (text) or 'messages' (chat), got keys {sorted(entry)}")
        extra = {k: v for k, v in entry.items() if k not in ("prompt", "messages", "category", "id")}
        return PromptItem(
            id=str(entry.get("id", f"p{index}")),
            prompt=prompt,
            category=entry.get("category", category),
            metadata=extra,
        )
    raise UserInputError(f"{where}: unsupported prompt entry {entry!r}")


def _from_yaml(path: Path) -> list[PromptItem]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UserInputError(f"{path}: not valid YAML ({exc})".replace("\n", " ")) from None
    if isinstance(data, dict):
        entries: list = list(data.get("prompts") or [])
        items = [_item(e, i, f"{path}: prompts[{i}]") for i, e in enumerate(entries)]
        for cat, cat_entries in (data.get("categories") or {}).items():
            for e in cat_entries:
                i = len(items)
                items.append(_item(e, i, f"{path}: categories.{cat}", category=str(cat)))
        return items
    if isinstance(data, list):
        return [_item(e, i, f"{path}: [{i}]") for i, e in enumerate(data)]
    raise UserInputError(f"{path}: a prompt suite is a list or a mapping with 'prompts'/'categories'")


def _from_jsonl(path: Path) -> list[PromptItem]:
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserInputError(f"{path}:{number}: not valid JSON ({exc})") from None
        items.append(_item(entry, len(items), f"{path}:{number}"))
    return items


def _from_dataset(dataset, column: str | None, category_column: str | None) -> list[PromptItem]:
    if column is None:
        raise UserInputError("a datasets.Dataset needs the name of its prompt column (column=...)")
    missing = [c for c in (column, category_column) if c and c not in dataset.column_names]
    if missing:
        raise UserInputError(f"dataset has no column(s) {missing}; columns are {dataset.column_names}")
    items = []
    for i, row in enumerate(dataset):
        category = row[category_column] if category_column else None
        items.append(_item(row[column], i, f"dataset row {i}", category=category))
    return items


def load_prompts(source, column: str | None = None, category_column: str | None = None) -> list[PromptItem]:
    """Build a prompt suite from a list, a ``.yaml``/``.yml``/``.jsonl`` path, or a Dataset."""
    if hasattr(source, "column_names"):
        items = _from_dataset(source, column, category_column)
    elif isinstance(source, str | Path):
        path = Path(source).expanduser()
        if not path.is_file():
            raise UserInputError(f"prompt suite {str(source)!r} does not exist")
        suffix = path.suffix.lower()
        if suffix in (".yaml", ".yml"):
            items = _from_yaml(path)
        elif suffix == ".jsonl":
            items = _from_jsonl(path)
        else:
            raise UserInputError(f"prompt suite {path} must be .yaml, .yml or .jsonl")
    elif isinstance(source, Sequence):
        items = [_item(e, i, f"prompts[{i}]") for i, e in enumerate(source)]
    else:
        raise UserInputError(f"cannot build a prompt suite from {type(source).__name__}")
    if not items:
        raise UserInputError(f"the prompt suite {source!r:.80} is empty")
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        raise UserInputError("prompt ids must be unique; duplicates: "
                             + ", ".join(sorted({i for i in ids if ids.count(i) > 1})))
    return items


def question_text(prompt) -> str:
    """The one text that stands for a prompt wherever a single question is needed (the judge's
    question, the report, tables, the CLI): a plain prompt itself, or the last *user* message of
    a conversation - a trailing system or assistant turn is context, not the question."""
    if isinstance(prompt, str):
        return prompt
    users = [m.get("content", "") for m in prompt if m.get("role") == "user"]
    return users[-1] if users else str(prompt[-1].get("content", ""))
