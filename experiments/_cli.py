"""The one module that defines absl flags; every experiment's ``__main__`` calls ``main``.

    python -m experiments.NAME --workdir=DIR [--config=FILE[:variant]] [--config.field=value]
                               [--mode=MODE]

``--config`` defaults to ``experiments/configs/NAME.py``; ``--help`` prints the flags and every
config field with the value the rest of the command line gives it. Flag errors (a misspelt
``--config.field``, a wrong type, a missing config file, a bad workdir) end in a one-line message
and exit status 2, before anything is compiled or written.

On glibc, ``main`` re-executes the process once with ``MALLOC_ENV``, which has malloc put its
large blocks on transparent huge pages. XLA on the CPU allocates its temporaries afresh on every
call, and glibc serves each large block with a fresh mmap and unmaps it on free, so every training
step page-faults its temporaries in again: 4 KiB at a time by default, 2 MiB at a time on huge
pages (LSTM step at B, T, D, H = 64, 100, 256, 256 on 2 busy cores: 32k faults, ~70 ms of kernel
time and 368 ms in all by default; ~900 faults, ~17 ms and 303 ms on huge pages). The blocks are
still unmapped on free, so the peak memory stays what XLA accounts for. (Never unmapping them,
MALLOC_MMAP_MAX_=0 with a 1 GiB trim threshold, was ~12 ms faster still but left the peak RSS of
long sequences at 1 to 3 times XLA's temporaries: freed blocks were not reused whole;
scripts/bench_memory.py.) It takes glibc >= 2.35 and the kernel's THP mode "madvise"
(/sys/kernel/mm/transparent_hugepage/enabled); with "always" the kernel does it unasked, with
"never" not at all. glibc reads the variable only at start-up, hence the re-exec.
``RNNLAB_MALLOC=0`` turns it off; variables already set are left as they are (to keep your own
``GLIBC_TUNABLES``, add ``glibc.malloc.hugetlb=1`` to it, colon-separated).

``main`` also adds rnnlab's XLA:CPU settings to XLA_FLAGS (``XLA_CPU_FLAGS``: no Eigen threads,
XLA's multi-output fusion), each unless XLA_FLAGS already names its option; ``RNNLAB_XLA_FLAGS=0``
adds neither. The log says which are in effect.

Experiments that train sweeps of models (gradient_flow, forget_bias, reproduce) ask ``main`` for
several CPU devices (``cpu_devices``): the "sharded" sweep strategy then runs the models on all
cores at once (rnnlab.train.sweep; scripts/bench_sweeps.py measures it). The single-model
launchers (long_memory, translate, caption, char_lm) ask for one device per core that their batch
splits over (``batch_devices``, at least ``MIN_ROWS_PER_DEVICE`` rows each): their training then
splits each batch over the devices (rnnlab.train.parallel), which uses the cores that a scan's
one thread leaves idle. A device count the user chose (``JAX_NUM_CPU_DEVICES``,
``XLA_FLAGS=--xla_force_host_platform_device_count``) wins, and ``RNNLAB_CPU_DEVICES=N``
overrides the experiment's choice (1 turns it off).
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

# glibc (>= 2.35) malloc: madvise(MADV_HUGEPAGE) on the blocks it mmaps, so that XLA's per-step
# temporaries page-fault in 2 MiB at a time, not 4 KiB; they are still unmapped on free, so peak
# memory stays XLA's. Needs THP mode "madvise" (the module docstring). Also in scripts/_env.sh.
MALLOC_ENV = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
_REEXEC_MARKER = "RNNLAB_MALLOC_REEXEC"  # set in the re-executed process: never exec twice


def _is_glibc() -> bool:
    try:
        return sys.platform.startswith("linux") and bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (AttributeError, ValueError, OSError):
        return False


def _switch(name: str, environ, meaning_0: str) -> bool:
    """An on/off environment switch, 1 (the default) or 0; another value is a one-line error,
    not silently on (scripts/_env.sh checks the same)."""
    value = environ.get(name, "1")
    if value not in ("0", "1"):
        fail(f"{name}={value!r}: expected 0 ({meaning_0}) or 1 (the default)")
    return value == "1"


def malloc_env_wanted(environ=None) -> bool:
    """Whether rnnlab sets ``MALLOC_ENV``: on glibc, unless ``RNNLAB_MALLOC=0``."""
    environ = os.environ if environ is None else environ
    return _switch("RNNLAB_MALLOC", environ, "glibc's defaults") and _is_glibc()


def reexec_with_malloc_env() -> None:
    """Re-executes this process (same interpreter, same command line) with ``MALLOC_ENV`` added.

    Does nothing if opted out, if every variable is already set, if it already re-executed once,
    or if the command line cannot be replayed (``python -c``, stdin); otherwise does not return.
    """
    if not malloc_env_wanted() or os.environ.get(_REEXEC_MARKER):
        return
    missing = {k: v for k, v in MALLOC_ENV.items() if k not in os.environ}
    if not missing:
        return
    main_module = sys.modules.get("__main__")
    replayable = getattr(main_module, "__spec__", None) is not None or os.path.isfile(sys.argv[0])
    if not replayable or not getattr(sys, "orig_argv", None):
        return
    env = {**os.environ, **missing, _REEXEC_MARKER: "1"}
    sys.stdout.flush()
    sys.stderr.flush()
    # argv[0] = sys.executable, not orig_argv[0] ("python"): the venv is found from it.
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def _thp_mode() -> str:
    """The kernel's transparent huge page mode: "always", "madvise", "never" or "unknown"."""
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return "unknown"
    return text.split("[", 1)[1].split("]", 1)[0] if "[" in text else "unknown"


def _log_environment() -> None:
    """Logs the settings of rnnlab's in effect (set here or by scripts/_env.sh) and their
    opt-outs."""
    xla_flags = os.environ.get("XLA_FLAGS", "").split()
    in_effect = [flag for flag in XLA_CPU_FLAGS.values() if flag in xla_flags]
    if in_effect:
        logging.info(
            "XLA_FLAGS has rnnlab's XLA:CPU settings %s (RNNLAB_XLA_FLAGS=0 leaves them out)",
            " ".join(in_effect),
        )
    if malloc_env_wanted() and all(os.environ.get(k) == v for k, v in MALLOC_ENV.items()):
        setting = " ".join(f"{k}={v}" for k, v in MALLOC_ENV.items())
        logging.info(
            "malloc puts large blocks on huge pages (%s, kernel THP mode %s): fewer page faults "
            "per XLA CPU step; RNNLAB_MALLOC=0 turns this off",
            setting,
            _thp_mode(),
        )


def use_cpu_devices(count: int) -> int | None:
    """Asks JAX for ``count`` CPU devices before its backend starts; returns the count set.

    Leaves JAX alone (returns None) when the user set ``JAX_NUM_CPU_DEVICES`` or the XLA_FLAGS
    device count, or when the backend already started. ``RNNLAB_CPU_DEVICES`` replaces
    ``count``. Devices exist only on the CPU platform; on a GPU they are not used.
    """
    if "JAX_NUM_CPU_DEVICES" in os.environ:
        return None
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return None
    override = os.environ.get("RNNLAB_CPU_DEVICES", "")
    if override:
        if not override.isdigit() or int(override) < 1:
            fail(f"RNNLAB_CPU_DEVICES={override!r}: expected a positive integer")
        count = int(override)
    import jax

    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:  # a JAX operation already ran: the backend has its devices
        return None
    return count


def cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# Fewest rows per device for data_parallel_devices: with fewer, each device's share is too
# little work for the second device to pay for its collectives (long_memory :tiny, B = 16,
# H = 16: ~2500 steps/s on one device, ~300-850 on two).
MIN_ROWS_PER_DEVICE = 16


def data_parallel_devices(batch_size, cores_: int | None = None) -> int:
    """CPU devices for training one model data parallel: one per core, at most as many as split
    ``batch_size`` evenly with ``MIN_ROWS_PER_DEVICE`` rows each; 1 if no split does.

    XLA runs a scan's steps on one thread, so a single device leaves a core idle; one device per
    core splits each batch over them (on 2 cores, default configs, steps/s: char_lm 11-13 -> 16-18,
    long_memory 13-15 -> 25-27, caption 11 -> 12-14; docs/performance.md).
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        return 1  # the experiment's own check names the bad value
    n = cores() if cores_ is None else cores_
    fits = [
        d for d in range(1, n + 1) if batch_size % d == 0 and batch_size // d >= MIN_ROWS_PER_DEVICE
    ]
    return max(fits, default=1)


def batch_devices(config) -> int:
    """``data_parallel_devices`` of ``config.batch_size``: ``main``'s ``cpu_devices`` for the
    single-model launchers."""
    return data_parallel_devices(getattr(config, "batch_size", None))


# XLA:CPU settings rnnlab's launchers add to XLA_FLAGS (scripts/_env.sh too), keyed by the name
# that, found anywhere in XLA_FLAGS, leaves the setting to the user. RNNLAB_XLA_FLAGS=0 adds none.
#
# multi_thread_eigen=false: vmapped sweeps used to hang for good (every thread in a futex wait, no
# error) on 1 and 2 CPU devices. A native stack (gdb) showed the cause: the models' orthogonal
# init, vmapped, ran as jaxlib's batched QR, which fans the batch out over XLA's intra-op pool
# from a pool thread and blocks; on 2 cores the pool ran dry. rnnlab's init now draws one QR at a
# time (rnnlab/cells/base.py, orthogonal) and sweeps initialise model by model. This flag, which
# made the hang rarer but not impossible (also reported downstream, PyAutoLabs/PyAutoFit#1530),
# stays on for vmapped code of the user's own: it costs nothing measurable here, since the
# matmuls run in YNNPACK fusions (LSTM step at B, T, D, H = 32, 128, 512, 512: 356 and 354 ms).
#
# xla_cpu_use_multi_output_fusion (a backend option: present means on, whatever its value):
# XLA:CPU's multi-output fusion pass, off by default, merges sibling fusions that read the same
# operands into one kernel. XLA:CPU runs a scan's body one operation at a time, each with a fixed
# dispatch cost, so fewer operations per step is time saved on every step: the LSTM training step
# at 32, 64, 128, 128 went from 13 to 9 operations per backward iteration and 12 to 10 forward,
# and took 4-11% less time (GRU: 2-9%; at 64, 100, 256, 256 LSTM 0-2%, GRU 0-14%), with
# bit-identical gradients (docs/performance.md, session 10).
XLA_CPU_FLAGS = {
    "xla_cpu_multi_thread_eigen": "--xla_cpu_multi_thread_eigen=false",
    "xla_cpu_use_multi_output_fusion": (
        "--xla_backend_extra_options=xla_cpu_use_multi_output_fusion=true"
    ),
}
XLA_CPU_DEFAULTS = " ".join(XLA_CPU_FLAGS.values())  # all of them, as one XLA_FLAGS string


def xla_flags_wanted(environ=None) -> bool:
    """Whether rnnlab adds ``XLA_CPU_FLAGS``: unless ``RNNLAB_XLA_FLAGS=0`` (another value than
    0 or 1 is a one-line error, not silently on)."""
    environ = os.environ if environ is None else environ
    return _switch("RNNLAB_XLA_FLAGS", environ, "leave XLA_FLAGS alone")


def add_xla_cpu_flags(environ=None) -> list[str]:
    """Appends to XLA_FLAGS each of ``XLA_CPU_FLAGS`` whose name XLA_FLAGS does not mention.

    Takes effect if no JAX computation has run yet (XLA reads the flags when the backend starts).
    Returns the flags it added (none with ``RNNLAB_XLA_FLAGS=0``). A setting of your own wins:
    ``--xla_cpu_multi_thread_eigen=true`` keeps Eigen's threads.
    """
    environ = os.environ if environ is None else environ
    if not xla_flags_wanted(environ):
        return []
    flags_now = environ.get("XLA_FLAGS", "")
    added = [flag for name, flag in XLA_CPU_FLAGS.items() if name not in flags_now]
    if added:
        environ["XLA_FLAGS"] = " ".join([flags_now, *added]).strip()
    return added


class UsageError(ValueError):
    """A config value an experiment refuses, raised before anything is compiled or written."""


def check(ok: bool, field: str, value, reason: str) -> None:
    """Raises ``UsageError("--config.FIELD=VALUE: REASON")`` unless ``ok``."""
    if not ok:
        raise UsageError(f"--config.{field}={value!r}: {reason}")


def check_ints(config, fields, minimum: int, reason: str | None = None) -> None:
    """``check`` that each of ``fields`` is an int >= ``minimum``."""
    for field in fields:
        value = config[field]
        ok = isinstance(value, int) and value >= minimum
        check(ok, field, value, reason or f"must be >= {minimum}")


def check_splits(config, devices: int, field: str = "batch_size") -> None:
    """``check`` that ``field`` (a batch size) splits evenly over the data-parallel devices."""
    value = config[field]
    check(value % devices == 0, field, value, f"not divisible by the {devices} devices")


def check_choices(config, choices) -> None:
    """``check`` that each (field, known values) pair holds one of the known values."""
    for field, known in choices:
        check(config[field] in known, field, config[field], f"expected one of {sorted(known)}")


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


def one_line(exc: BaseException) -> str:
    """An exception's message on one line, for a usage error (quotes and newlines folded)."""
    return " ".join(str(exc).replace("\\n", " ").replace("\\'", "'").strip("'\" ").split())


def main(
    modes: dict[str, Callable],
    name: str | None = None,
    argv: list[str] | None = None,
    cpu_devices: int | None = None,
):
    """Parses the flags and calls ``modes[--mode](config, workdir)``.

    Args:
        modes: mode name -> ``fn(config, workdir)``; "train" is the default mode.
        name: the experiment's name (its config file); defaults to ``__main__``'s module name.
        argv: the command line (defaults to ``sys.argv``, and then, on glibc, the process is
            re-executed once with ``MALLOC_ENV``; see the module docstring).
        cpu_devices: CPU devices to ask JAX for (``use_cpu_devices``): a count, e.g. ``cores()``
            for sweeps sharded over the cores, or a function of the parsed config, e.g.
            ``batch_devices`` for single-model training, consulted for ``--mode=train`` in a
            single-process run only (decoding and sampling modes, and each process of a
            multi-process run, keep one device); None leaves JAX's default of one unless
            ``RNNLAB_CPU_DEVICES`` asks for more.
    """
    if argv is None:
        reexec_with_malloc_env()
    add_xla_cpu_flags()
    argv = list(sys.argv if argv is None else argv)
    want_help = any(a in HELP_FLAGS for a in argv[1:])
    argv = [argv[0], *(a for a in argv[1:] if a not in HELP_FLAGS)]
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
        fail(f"--config: {one_line(e)}")
    # absl's own flags (--logtostderr, --verbosity, ...) live on the global FLAGS.
    fv.append_flag_values(flags.FLAGS)
    try:
        fv(argv)
    except flags.Error as e:
        fail(str(e))
    except AttributeError as e:  # ml_collections: a misspelt --config.field
        fail(f"--config: {one_line(e)}")
    try:
        config = config_flag.value
        _ = list(config.keys())
    except (OSError, AttributeError, TypeError) as e:
        fail(f"--config: {one_line(e)}")
    if want_help:
        print(usage(name, fv, config, str(default_config.relative_to(CONFIG_DIR.parents[1]))))
        sys.exit(0)
    # Set once the config is known (a device count may follow from its batch size); parsing the
    # flags and the config file runs no JAX computation, so the backend has not started yet.
    count = cpu_devices
    if callable(cpu_devices):  # data-parallel training of one model: only to train, one process
        train_here = fv.mode == "train" and _processes(fv) == 1
        count = cpu_devices(config) if train_here else None
        count = None if count == 1 else count  # JAX's default; nothing to log
    devices_set = None
    if count is not None or os.environ.get("RNNLAB_CPU_DEVICES"):
        devices_set = use_cpu_devices(count or 1)  # the variable applies to every launcher
    if fv.workdir is None:
        fail("--workdir is required")
    created = not Path(fv.workdir).expanduser().exists()
    workdir = check_workdir(fv.workdir)
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    logging.use_absl_handler()
    logging.set_verbosity(logging.INFO)
    logging.get_absl_handler().addFilter(_quiet_libraries)
    _log_environment()
    if devices_set is not None:
        logging.info(
            "%d CPU devices (sweeps shard their models over them, single-model training its "
            "batches); RNNLAB_CPU_DEVICES=1 turns this off",
            devices_set,
        )
    return _run(modes[fv.mode], config, workdir, fv, created)


HELP_FLAGS = ("--help", "-h", "--helpshort", "--helpfull")


def _processes(fv) -> int:
    """The process count of a multi-host run, from --num_processes or its variable; else 1."""
    from rnnlab.train.parallel import ENV  # imports JAX; its backend does not start

    from_env = os.environ.get(ENV["num_processes"], "")
    n = fv.num_processes if fv.num_processes is not None else from_env
    return int(n) if str(n).isdigit() else 1


def _config_lines(config, prefix: str = "config.") -> list[str]:
    """``--config.a.b=value`` for every leaf of a ConfigDict, in its order."""
    lines = []
    for key, value in config.items():
        if hasattr(value, "items"):
            lines += _config_lines(value, f"{prefix}{key}.")
        else:
            lines.append(f"  --{prefix}{key}={value!r}")
    return lines


def usage(name: str, fv, config, config_file: str) -> str:
    """--help: what the experiment does, its flags, and every config field with its value."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    module = main if spec and spec.name.endswith(name) else sys.modules.get(f"experiments.{name}")
    doc = (getattr(module, "__doc__", None) or "").strip()
    head = f"python -m experiments.{name} --workdir=DIR [--config=FILE[:variant]] [--config.x=y]"
    lines = [f"usage: {head}", ""] + ([doc.split("\n\n")[0], ""] if doc else []) + ["flags:"]
    for key in ("workdir", "config", "mode", "coordinator_address", "num_processes", "process_id"):
        flag = fv[key]
        choices = getattr(flag.parser, "enum_values", None)
        one_of = f" One of: {', '.join(choices)}." if choices else ""
        default = config_file if key == "config" else flag.default
        lines.append(f"  --{key}: {flag.help.split('>: ')[-1]}{one_of} Default: {default!r}.")
    lines += ["", "config (the values this command would use; change one: --config.FIELD=VALUE):"]
    return "\n".join(lines + _config_lines(config))


def _quiet_libraries(record) -> bool:
    """Drops the INFO chatter of orbax and JAX's backend setup; keeps their warnings."""
    noisy = "orbax" in record.pathname or "jax/_src" in record.pathname
    return record.levelno >= std_logging.WARNING or not noisy


def _run(fn: Callable, config, workdir: Path, fv, created: bool = False):
    """Starts jax.distributed if asked, then ``fn``; known failures become one-line errors.

    A usage error (a config value the experiment refuses, raised before it writes anything)
    removes the workdir again if this command created it and it is still empty.
    """
    from rnnlab.train import CheckpointError, ConfigMismatchError, NonFiniteError, parallel

    try:
        parallel.initialize_distributed(fv.coordinator_address, fv.num_processes, fv.process_id)
    except ValueError as e:
        fail(str(e))
    try:
        return fn(config, str(workdir))
    except UsageError as e:
        if created and not any(workdir.iterdir()):
            workdir.rmdir()
        fail(str(e))
    except (ConfigMismatchError, CheckpointError, NonFiniteError) as e:
        fail(f"{type(e).__name__}: {e}", status=1)


def suggest(name: str, known) -> str:
    """' (did you mean X?)' for a near miss, else ''."""
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
