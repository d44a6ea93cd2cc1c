"""Reading user files (suites, run configs, task files): bounded, safe parsers with one-line errors naming the line.

Why this is strict: a configuration file may come from anywhere (a colleague, a paper's repository). YAML can run
code (refused: a SafeLoader), expand a few aliases into gigabytes ("billion laughs": aliases are refused), nest
deeper than Python's recursion limit, use a list as a mapping key, or not be text at all. Each of these is a one-line
``ConfigError`` saying where and what to do, never a traceback or an exhausted machine. Mappings remember the line
of each key (``LineDict.lines``) so later checks can name it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from chainforget.errors import ConfigError, brief

MAX_FILE_BYTES = 4 << 20  # a configuration or task file larger than this is not one
MAX_DEPTH = 32  # nesting of mappings and lists; configurations need a handful


class LineDict(dict):
    """A mapping read from a file, with the 1-based line of each key (``lines``; absent where unknown)."""

    lines: dict[Any, int]

    def line(self, key: Any) -> str:
        """``" line N"`` for a key read from a file, else ``""`` (for messages: f"{path}{d.line(k)}: ...")."""
        n = getattr(self, "lines", {}).get(key)
        return f" line {n}" if n else ""


def read_text_file(path: str | Path, what: str, hint: str = "check the path") -> str:
    """A UTF-8 text file of bounded size; anything else is a one-line ConfigError naming the file (and line)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} {path} does not exist; {hint}")
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError(f"{path} is {size} bytes; a {what} is at most {MAX_FILE_BYTES >> 20} MiB: check that "
                              f"you passed the right file")
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path} line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); a {what} must be "
                          f"saved as UTF-8") from None


def _bounded_loader():
    import yaml

    class Loader(yaml.SafeLoader):
        """yaml.SafeLoader without aliases, with a nesting limit, hashable keys only and no duplicate keys."""

        depth = 0

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None, None, f"aliases (*{str(event.anchor)[:40]}) are not allowed in chainforget files; "
                                f"write the value out", event.start_mark)
            self.depth += 1
            try:
                if self.depth > MAX_DEPTH:
                    raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels",
                                                      self.peek_event().start_mark)
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    def construct_mapping(loader, node, deep=False):
        seen, lines = set(), {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                kind = "list" if isinstance(key_node, yaml.SequenceNode) else "mapping"
                raise yaml.constructor.ConstructorError(None, None, f"a {kind} cannot be a mapping key; keys are "
                                                                    f"names", key_node.start_mark)
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {brief(key, 40)}",
                                                        key_node.start_mark)
            seen.add(key)
            lines[key] = key_node.start_mark.line + 1
        out = LineDict(yaml.SafeLoader.construct_mapping(loader, node, deep=deep))
        out.lines = lines
        return out

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return Loader


def parse_yaml(text: str, path: str | Path, *, task_file: bool = False) -> Any:
    """YAML text through the bounded safe loader; errors name the file, line and column (task files say
    "invalid YAML at line ..." as their docs show)."""
    import yaml

    try:
        return yaml.load(text, Loader=_bounded_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        if task_file:
            raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
        raise ConfigError(f"{path}{where}: {problem}; fix the YAML syntax") from None
    except RecursionError:  # the nesting limit stops this first; kept as a last line of defence
        raise ConfigError(f"{path}: nested too deeply; fix the YAML") from None


def parse_toml(text: str, path: str | Path) -> Any:
    """TOML text (tomllib); errors name the file and line, deep nesting is refused."""
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {brief(str(exc), 120)[1:-1]}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply; fix the TOML") from None
    check_depth(data, path)
    return _toml_lines(data, text)


def _toml_lines(data: dict, text: str) -> LineDict:
    """Top-level keys (and the keys of their tables) with the line that sets them, found in the text (tomllib
    keeps no positions), so type errors in TOML task files name a line too."""
    lines = text.splitlines()

    def find(key: str, start: int = 0) -> int | None:
        pattern = re.compile(rf"^\s*(\[\s*)?[\"']?{re.escape(str(key))}[\"']?\s*(=|\])")
        return next((i + 1 for i in range(start, len(lines)) if pattern.match(lines[i])), None)

    out = LineDict(data)
    out.lines = {k: n for k in data if (n := find(k))}
    for key, value in data.items():
        if isinstance(value, dict):
            table = LineDict(value)
            start = out.lines.get(key, 1) - 1
            table.lines = {k: n for k in value if (n := find(k, start))}
            out[key] = table
    return out


def check_depth(value: Any, path: str | Path, limit: int = MAX_DEPTH, where: str = "") -> None:
    """Refuse values nested deeper than ``limit`` (iteratively: the check itself cannot overflow the stack)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, (list, tuple)):
            children = list(item)
        else:
            continue
        if depth > limit:
            raise ConfigError(f"{path}{where}: nested deeper than {limit} levels; flatten it")
        stack.extend((c, depth + 1) for c in children)


def load_config_file(path: str | Path, what: str, *, hint: str = "pass an existing YAML file",
                     mapping_hint: str = "keys as in `chainforget run --help`") -> dict[str, Any]:
    """Read a YAML mapping; ``what`` names the file in messages ("suite file", "run config")."""
    data = parse_yaml(read_text_file(path, what, hint), path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a YAML mapping ({mapping_hint}), got {type(data).__name__}")
    return data
