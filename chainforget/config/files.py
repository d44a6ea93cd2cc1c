"""Reading user configuration files (suites, run configs): YAML through a safe loader, one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chainforget.errors import ConfigError


def _unique_key_loader():
    import yaml

    class Loader(yaml.SafeLoader):
        """yaml.SafeLoader that refuses a key given twice in one mapping (instead of keeping the last)."""

    def construct_mapping(loader, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return loader.construct_mapping_plain(node, deep=deep)

    Loader.construct_mapping_plain = yaml.SafeLoader.construct_mapping
    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return Loader


def load_config_file(path: str | Path, what: str, *, hint: str = "pass an existing YAML file",
                     mapping_hint: str = "keys as in `chainforget run --help`") -> dict[str, Any]:
    """Read a YAML mapping; ``what`` names the file in messages ("suite file", "run config")."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} {path} does not exist; {hint}")
    try:
        data = yaml.load(p.read_text(), Loader=_unique_key_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}{where}: {problem}; fix the YAML syntax") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text file; a {what} is a YAML file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a YAML mapping ({mapping_hint}), got {type(data).__name__}")
    return data
