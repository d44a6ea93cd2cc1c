"""Named registries with provenance and "did you mean" errors (the lm-evaluation-harness habit)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from chainforget.errors import DuplicateNameError, UnknownNameError, did_you_mean


@dataclass(frozen=True)
class RegistryEntry:
    name: str
    obj: Any
    description: str
    source: str  # the distribution (or plugin) that registered it


class Registry:
    """A name -> object map for one kind of thing (task, strategy, metric, model, preset)."""

    def __init__(self, kind: str, plural: str | None = None):
        self.kind = kind
        self.plural = plural or (kind[:-1] + "ies" if kind.endswith("y") else kind + "s")
        self._entries: dict[str, RegistryEntry] = {}
        self._source = "unknown"

    def scoped(self, source: str) -> "_ScopedRegistry":
        """A view that records ``source`` as the provider of every name registered through it."""
        return _ScopedRegistry(self, source)

    def register(self, name: str, obj: Any, description: str = "", *, source: str | None = None) -> None:
        source = source or self._source
        if not isinstance(name, str) or not name.strip():
            raise DuplicateNameError(f"{source} tried to register a {self.kind} with an empty name")
        if name in self._entries:
            first = self._entries[name].source
            raise DuplicateNameError(
                f"{self.kind} {name!r} is registered twice: by {first} and by {source}; "
                f"rename one of them or uninstall one plugin"
            )
        if not description:
            doc = getattr(obj, "description", None) or (getattr(obj, "__doc__", None) or "")
            description = doc.strip().splitlines()[0] if doc and doc.strip() else ""
        self._entries[name] = RegistryEntry(name, obj, description, source)

    def get(self, name: str) -> Any:
        return self.entry(name).obj

    def entry(self, name: str) -> RegistryEntry:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        hint = did_you_mean(name, self._entries, cutoff=0.5)
        known = ", ".join(sorted(self._entries)) or "none"
        return f"unknown {self.kind} {name!r}; {hint}known {self.plural}: {known}"

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[RegistryEntry]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return sorted(self._entries)


class _ScopedRegistry:
    """What a plugin's hook receives: registers into the real registry under the plugin's source name."""

    def __init__(self, registry: Registry, source: str):
        self._registry = registry
        self.source = source
        self.kind = registry.kind

    def register(self, name: str, obj: Any, description: str = "") -> None:
        self._registry.register(name, obj, description, source=self.source)

    def __contains__(self, name: object) -> bool:
        return name in self._registry

    def get(self, name: str) -> Any:
        return self._registry.get(name)

    def unknown_message(self, name: str) -> str:
        return self._registry.unknown_message(name)
