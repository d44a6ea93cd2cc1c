"""Tasks: data sets of examples with demographic groups (see ``chainforget.tasks.base`` and docs/tasks.md).

Nothing heavy is imported here: the plugin manager imports this package to register the built-in tasks.
"""

from chainforget.tasks.base import Example, SplitRule, TaskMetric, TaskSpec
from chainforget.tasks.resolve import resolve_task
from chainforget.tasks.task import STANDARD_METRICS, Task
from chainforget.tasks.userfile import load_task_file

__all__ = ["Example", "SplitRule", "TaskMetric", "TaskSpec", "Task", "STANDARD_METRICS", "resolve_task",
           "load_task_file"]
