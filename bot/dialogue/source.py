"""Read a dialog file into mappings and lists that remember the line of every key and item.

Every scalar is read as text: YAML 1.1 would turn an answer like `no` or `on` into a boolean, and
dialog texts, payloads and names are words. Numbers are parsed where a number is expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bot.dialogue.errors import DialogError, Where


class Map(dict[str, Any]):
    """A YAML mapping; `where` is the line that introduces it (its key, or its `-` in a list), `at(key)`
    the line of one of its keys."""

    def __init__(self, where: Where) -> None:
        super().__init__()
        self.where = where
        self.key_where: dict[str, Where] = {}

    def at(self, key: str) -> Where:
        return self.key_where.get(key, self.where)

    def check_keys(self, what: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
        for key in self:
            if key not in required and key not in optional:
                allowed = ", ".join(required + optional)
                raise self.at(key).error(f"unknown key '{key}' in {what} (allowed: {allowed})")
        for key in required:
            if key not in self or self[key] == "":
                raise self.where.error(f"{what} is missing required key '{key}'")

    def text(self, key: str, what: str) -> str:
        """A required, non-empty scalar."""
        value = self.get(key, "")
        if not isinstance(value, str):
            raise self.at(key).error(f"'{key}' in {what} must be text, not a {_kind(value)}")
        if not value:
            raise self.where.error(f"{what} is missing required key '{key}'")
        return value

    def optional_text(self, key: str, what: str) -> str | None:
        return self.text(key, what) if self.get(key, "") != "" else None

    def mapping(self, key: str, what: str) -> Map:
        value = self.get(key)
        if not isinstance(value, Map):
            raise self.at(key).error(f"'{key}' in {what} must be a mapping of name: value")
        return value

    def names(self, key: str, what: str) -> list[tuple[str, Where]]:
        """A scalar or a list of scalars, each with its own line (`trigger: a` or `trigger: [a, b]`)."""
        value = self.get(key, "")
        if value == "":
            return []
        if isinstance(value, str):
            return [(value, self.at(key))]
        if isinstance(value, Seq) and all(isinstance(item, str) and item for item in value):
            return list(zip(value, value.item_where, strict=True))
        raise self.at(key).error(f"'{key}' in {what} must be a word or a list of words")


class Seq(list[Any]):
    """A YAML list; `item_where[i]` is the line of item i."""

    def __init__(self) -> None:
        super().__init__()
        self.item_where: list[Where] = []


class _Loader(yaml.BaseLoader):
    path: Path


def _where(loader: _Loader, node: yaml.Node) -> Where:
    return Where(loader.path, node.start_mark.line + 1)


def _construct_map(loader: _Loader, node: yaml.Node) -> Map:
    assert isinstance(node, yaml.MappingNode)
    result = Map(_where(loader, node))
    for key_node, value_node in node.value:
        where = _where(loader, key_node)
        if not isinstance(key_node, yaml.ScalarNode):
            raise where.error("a key must be a plain word")
        key = key_node.value
        if key in result:
            raise where.error(f"duplicate key '{key}'")
        value = loader.construct_object(value_node, deep=True)
        if isinstance(value, Map):  # "flow 'x' is missing 'steps'" should point at `x:`, not inside it
            value.where = where
        result[key] = value
        result.key_where[key] = where
    return result


def _construct_seq(loader: _Loader, node: yaml.Node) -> Seq:
    assert isinstance(node, yaml.SequenceNode)
    result = Seq()
    for item in node.value:
        result.append(loader.construct_object(item, deep=True))
        result.item_where.append(_where(loader, item))
    return result


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def read(path: Path) -> Map | None:
    """Parse one file; None when it is empty."""
    try:
        source = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DialogError(f"{path}:1: not UTF-8 text ({exc.reason})") from exc
    try:
        loader = _Loader(source)  # the reader already rejects control characters here
        loader.path = path
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise DialogError(f"{path}:{line}: YAML syntax error: {exc.problem or exc.context}") from exc
    except yaml.YAMLError as exc:  # a reader error carries a character offset instead of a mark
        line = source.count("\n", 0, getattr(exc, "position", 0)) + 1
        raise DialogError(f"{path}:{line}: YAML syntax error: {str(exc).splitlines()[0]}") from exc
    if data is None or data == "":
        return None
    if not isinstance(data, Map):
        raise Where(path, 1).error("a dialog file must be a mapping of sections (intents, flows, texts…)")
    return data


def _kind(value: object) -> str:
    return "list" if isinstance(value, list) else "mapping" if isinstance(value, dict) else "value"
