"""Data for rnnlab: generated tasks keyed by (seed, step) and the sources that feed the loop."""

from rnnlab.data import tasks
from rnnlab.data.tasks import Source, Task

__all__ = ["Source", "Task", "tasks"]
