"""Training: state, step, data parallelism, checkpoints, writers, the loop, sweeps.

The library side of every experiment; it takes plain values and arrays (no flags, no configs
read deep inside).
"""

from rnnlab.train import checkpoint, loop, parallel, step, sweep, writers
from rnnlab.train.checkpoint import Checkpointer, CheckpointError, ConfigMismatchError
from rnnlab.train.loop import NonFiniteError, train
from rnnlab.train.state import TrainState

__all__ = [
    "CheckpointError",
    "Checkpointer",
    "ConfigMismatchError",
    "NonFiniteError",
    "TrainState",
    "checkpoint",
    "loop",
    "parallel",
    "step",
    "sweep",
    "train",
    "writers",
]
