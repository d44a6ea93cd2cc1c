"""``resolve_task``: one entry point for registered task names and user task files."""

from __future__ import annotations

from pathlib import Path

from chainforget.errors import ConfigError, UnknownNameError
from chainforget.tasks.task import Task

TASK_FILE_SUFFIXES = (".yaml", ".yml", ".toml")


def resolve_task(name_or_path: str | Path | Task) -> Task:
    """A registered task by name, or a task file (a path ending in .yaml, .yml or .toml)."""
    if isinstance(name_or_path, Task):
        return name_or_path
    text = str(name_or_path)
    if text.lower().endswith(TASK_FILE_SUFFIXES):
        from chainforget.plugins import registries
        from chainforget.tasks.userfile import load_task_file

        task = load_task_file(text)
        if task.name in registries("tasks"):  # it would silently stand in for the registered task in the run
            raise ConfigError(f"task file {text} names its task {task.name!r}, which is a registered task; give the "
                              f"file's task another name (e.g. name: my-{task.name})")
        return task
    from chainforget.plugins import registries

    registry = registries("tasks")
    if text not in registry:
        raise UnknownNameError(registry.unknown_message(text) + "; or give a task file ending in .yaml/.yml/.toml")
    return registry.get(text)
