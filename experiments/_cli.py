"""The one module that defines absl flags; every experiment's ``__main__`` calls ``main``.

    python -m experiments.NAME --workdir=DIR [--config=FILE[:variant]] [--config.field=value]
                               [--mode=MODE]

``--config`` defaults to ``experiments/configs/NAME.py``. Flag errors (a misspelt
``--config.field``, a wrong type, a missing config file, a bad workdir) end in a one-line message
and exit status 2, before anything is compiled or written.
"""

from __future__ import annotations

import difflib
import logging as std_logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from absl import flags, logging
from ml_collections import config_flags

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


class UsageError(ValueError):
    """A config value an experiment refuses, raised before anything is compiled or written."""


def check(ok: bool, field: str, value, reason: str) -> None:
    """Raises ``UsageError("--config.FIELD=VALUE: REASON")`` unless ``ok``."""
    if not ok:
        raise UsageError(f"--config.{field}={value!r}: {reason}")


def fail(message: str, status: int = 2) -> None:
    """Prints ``error: message`` to stderr and exits with status 2 (a usage error)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(status)


def check_workdir(workdir: str) -> Path:
    """Creates ``workdir`` if needed; fails clearly if it is a file or not writable."""
    path = Path(workdir).expanduser()
    if path.exists() and not path.is_dir():
        fail(f"--workdir={workdir}: exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        fail(f"--workdir={workdir}: cannot create it ({e.strerror})")
    if not os.access(path, os.W_OK | os.X_OK):
        fail(f"--workdir={workdir}: not writable")
    return path


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).replace("\\n", " ").replace("\\'", "'").strip("'\" ").split())


def main(modes: dict[str, Callable], name: str | None = None, argv: list[str] | None = None):
    """Parses the flags and calls ``modes[--mode](config, workdir)``.

    Args:
        modes: mode name -> ``fn(config, workdir)``; "train" is the default mode.
        name: the experiment's name (its config file); defaults to ``__main__``'s module name.
        argv: the command line (defaults to ``sys.argv``).
    """
    argv = list(sys.argv if argv is None else argv)
    if name is None:
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        name = (spec.name if spec else Path(argv[0]).stem).rsplit(".", 1)[-1]
    default_config = CONFIG_DIR / f"{name}.py"
    fv = flags.FlagValues()
    flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.", fv)
    flags.DEFINE_enum("mode", "train", sorted(modes), "What to do.", flag_values=fv)
    flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-host).", fv)
    flags.DEFINE_integer("num_processes", None, "Processes in a multi-host run.", flag_values=fv)
    flags.DEFINE_integer("process_id", None, "This process's index (multi-host).", flag_values=fv)
    # ml_collections loads the file as module "config_config" and, if that name is already in
    # sys.modules, executes the new file into the old module: a file without get_config would
    # then inherit the previous one's. Forget it so every call (tests call main repeatedly)
    # loads afresh.
    sys.modules.pop("config_config", None)
    try:  # ml_collections reads the --config.field overrides from argv right here
        config_flag = config_flags.DEFINE_config_file(
            "config", str(default_config), "Config file (FILE or FILE:variant).", fv, sys_argv=argv
        )
    except (AttributeError, KeyError, flags.Error) as e:
        fail(f"--config: {_one_line(e)}")
    # absl's own flags (--logtostderr, --verbosity, ...) live on the global FLAGS.
    fv.append_flag_values(flags.FLAGS)
    try:
        fv(argv)
    except flags.Error as e:
        fail(str(e))
    except AttributeError as e:  # ml_collections: a misspelt --config.field
        fail(f"--config: {_one_line(e)}")
    try:
        config = config_flag.value
        _ = list(config.keys())
    except (OSError, AttributeError, TypeError) as e:
        fail(f"--config: {_one_line(e)}")
    if fv.workdir is None:
        fail("--workdir is required")
    workdir = check_workdir(fv.workdir)
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    logging.use_absl_handler()
    logging.set_verbosity(logging.INFO)
    logging.get_absl_handler().addFilter(_quiet_libraries)
    return _run(modes[fv.mode], config, workdir, fv)


def _quiet_libraries(record) -> bool:
    """Drops the INFO chatter of orbax and JAX's backend setup; keeps their warnings."""
    noisy = "orbax" in record.pathname or "jax/_src" in record.pathname
    return record.levelno >= std_logging.WARNING or not noisy


def _run(fn: Callable, config, workdir: Path, fv):
    """Starts jax.distributed if asked, then ``fn``; known failures become one-line errors."""
    from rnnlab.train import CheckpointError, ConfigMismatchError, NonFiniteError, parallel

    try:
        parallel.initialize_distributed(fv.coordinator_address, fv.num_processes, fv.process_id)
    except ValueError as e:
        fail(str(e))
    try:
        return fn(config, str(workdir))
    except UsageError as e:
        fail(str(e))
    except (ConfigMismatchError, CheckpointError, NonFiniteError) as e:
        fail(f"{type(e).__name__}: {e}", status=1)


def suggest(name: str, known) -> str:
    """' (did you mean X?)' for a near miss, else ''."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
