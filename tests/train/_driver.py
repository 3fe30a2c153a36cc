"""Runs long_memory's ":tiny" config in a fresh process, optionally killing itself mid-run.

    python -m tests.train._driver WORKDIR [KILL] [field=value ...]

KILL is "log:N" (SIGKILL right after metrics for step N are written) or "save:N" (SIGKILL
right after the asynchronous save of step N has started, so it is still in flight), or "-".
"""

import ast
import logging
import os
import signal
import sys


def main(workdir: str, kill: str = "-", *overrides: str) -> None:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("rnnlab").setLevel(logging.INFO)
    from experiments import long_memory
    from experiments.configs import long_memory as configs
    from rnnlab.train import checkpoint, writers

    config = configs.get_config("tiny")
    for item in overrides:
        field, _, value = item.partition("=")
        try:
            config[field] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            config[field] = value
    where, _, at = kill.partition(":")
    die = lambda: os.kill(os.getpid(), signal.SIGKILL)  # noqa: E731

    if where == "log":
        write = writers.MetricWriter.write_scalars

        def write_then_die(self, step, scalars, **labels):
            write(self, step, scalars, **labels)
            if step == int(at):
                die()

        writers.MetricWriter.write_scalars = write_then_die
    elif where == "save":
        save = checkpoint.Checkpointer.save

        def save_then_die(self, step, state, config):
            save(self, step, state, config)
            if step == int(at):
                die()

        checkpoint.Checkpointer.save = save_then_die
    long_memory.run(config, workdir)


if __name__ == "__main__":
    main(*sys.argv[1:])
