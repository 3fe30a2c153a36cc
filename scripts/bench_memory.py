"""Peak memory and time of an RNN training step against sequence length T, with and without remat.

    .venv/bin/python scripts/bench_memory.py --quick                 # T <= 1000, ~1-2 minutes
    .venv/bin/python scripts/bench_memory.py --json /tmp/bench_memory.json \\
        --plot /tmp/bench_memory.png                                 # T up to 10,000
    .venv/bin/python scripts/bench_memory.py --cells lstm,gru --hidden 256 --remat none,sqrt,50

A step is forward + backward w.r.t. the params of loss = mean(ys^2), ys = ``recurrent.unroll``
(the fused scan of rnnlab/cells/fused.py) over a [B, T, D] float32 batch, for T in
{100, 300, 1000, 3000, 10000} and ``remat`` in {None, k = round(sqrt(T)) (the k minimising
T / k + k), a fixed k (100; skipped where k >= T, one chunk that saves nothing, and where it
equals round(sqrt(T)))}. Each configuration runs in a fresh subprocess of its own, so that its
peak resident memory is its own; the parent collects one JSON line from each. Measured:

    xla_temp      ``jit(f).lower(...).compile().memory_analysis().temp_size_in_bytes``: XLA's
                  own accounting of the temporaries of one step (what remat reduces). Also in
                  the JSON: argument_size, output_size, generated_code_size, and
                  peak_memory_in_bytes, which on CPU (jax 0.10.2) is arguments + outputs only
                  (it equals their sum to within 64 bytes) and leaves the temporaries out.
    rss_step      the real peak: VmHWM during the warm-up and timed steps minus VmRSS just
                  before them, the high-water mark reset (/proc/self/clear_refs = 5) after
                  compiling, so that the compiler's own peak does not hide the step's.
    rss_process   the peak RSS of the whole child, compilation included (ru_maxrss, or the larger
                  VmHWM of the compile and step windows), minus VmRSS after imports and input
                  creation.
    median_ms     the median wall time of ``--reps`` steps (more for short steps, about one
                  second's worth, at most 30) after one warm-up call, each ended by
                  block_until_ready (``min_ms`` in the JSON).
    dev_peak      on an accelerator (JAX's backend not "cpu"): its allocator's peak over the
                  child's life minus what was in use before compiling (params and xs), from
                  ``jax.local_devices()[0].memory_stats()``; it includes what compilation borrows
                  (a GPU's autotuning buffers). "-" on the CPU. Run with
                  XLA_PYTHON_CLIENT_PREALLOCATE=false on a GPU: each child is a JAX process, and
                  with JAX's default every one (and this parent) takes 75% of the card at start.

The children run with rnnlab's allocator setting (experiments/_cli.py, MALLOC_ENV: glibc puts
its large blocks on transparent huge pages), as rnnlab's launchers do, unless RNNLAB_MALLOC=0; the
first line of the output says which. Either way glibc mmaps each large block and unmaps it on
free, so rss_step is about xla_temp (T = 3000 without remat, xla_temp 469 MiB: rss_step 424 to 484
MiB with the setting, 484 to 497 without). The setting used before, MALLOC_MMAP_MAX_=0,
MALLOC_TRIM_THRESHOLD_=1 GiB and MALLOC_ARENA_MAX=1 (one heap that never returns memory), left
rss_step at 1 to 3 times xla_temp, varying from run to run: the temporaries freed by one call were
not always reused whole by the next (at T = 1000 without remat, 156, 313, then 467 MiB after the
first three calls of one run; 156 MiB until the seventh call of another).

What to expect (xla_temp of the LSTM, D = H = 128, T = 400 to 3200, measured): without remat,
(D + 11H) floats per step and batch row, 7H of them the residuals the fused forward saves (h',
c, tanh(c') and the four gates; the gates go over the input projection's rows and the backward's
dz over the gates: D + 19H before session 10, when each had a buffer of its own). With remat=k,
(D + 2H) per step plus 2H per chunk boundary: the T / k term is there, but what ``unroll`` takes
and returns stays [B, T, *] whatever k is (the time-major copy of xs, the outputs ys that the
loss keeps, their cotangent), so memory is still linear in T, with a slope about 4 times smaller
at D = H. The k term (one chunk's recomputed residuals, ~20H k) shares memory with buffers
already dead in the backward pass and shows only where k > ~T / 20, i.e. at small T; for
T >= 400 any k from 10 to sqrt(T) gives about the same memory.

Prints a table (and where the JSON and the figure went); --json writes the rows with the machine
and versions, --plot a two-panel log-log figure (peak memory and step time against T, one line
per cell and remat setting). Times depend on whatever else runs on the machine: the load is in
the JSON.

This is a benchmark, not a test: it prints and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from experiments._cli import MALLOC_ENV, add_xla_cpu_flags, malloc_env_wanted  # noqa: E402
from rnnlab import cells, recurrent  # noqa: E402

add_xla_cpu_flags()  # before any JAX computation (children inherit it); see experiments/_cli.py

LENGTHS = (100, 300, 1000, 3000, 10000)
QUICK_LENGTHS = (100, 300, 1000)
MIB = 2**20
# rnnlab cell per benchmark name ("gru": the reset-after form, as in scripts/bench_cells.py).
CELLS = {"lstm": ("lstm", {}), "gru": ("gru", {"reset_after": True})}


def chunk_length(setting: str, T: int) -> int | None:
    """The remat chunk k of a setting ("none", "sqrt" or an int) at length T; 0 = skip."""
    if setting == "none":
        return None
    k = max(1, round(math.sqrt(T))) if setting == "sqrt" else int(setting)
    return k if k < T else 0  # k >= T is one chunk: a checkpoint of everything, nothing saved


# --- the child: one configuration in a process of its own ------------------------------------


def _status_kib() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in KiB (Linux /proc)."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out


def _reset_peak() -> bool:
    """Resets VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _device_bytes() -> dict | None:
    """The default device's allocator statistics (bytes_in_use, peak_bytes_in_use), or None
    where the backend keeps none (the CPU)."""
    stats = jax.local_devices()[0].memory_stats()
    return stats if stats and "peak_bytes_in_use" in stats else None


def measure(name: str, B: int, T: int, D: int, H: int, remat: int | None, reps: int) -> dict:
    """Compiles and times one training step; the memory numbers of the module docstring."""
    cell = cells.get(CELLS[name][0], **CELLS[name][1])
    k_p, k_x = jax.random.split(jax.random.key(0))
    params = cell.init(k_p, D, H)
    xs = jax.random.normal(k_x, (B, T, D))  # [B, T, D]
    jax.block_until_ready((params, xs))
    base = _status_kib()["VmRSS"]
    device = _device_bytes()

    def loss(params, xs):
        ys = recurrent.unroll(cell, params, xs, remat=remat)[1]  # [B, T, H]
        return jnp.mean(ys * ys)

    start = time.perf_counter()
    step = jax.jit(jax.grad(loss)).lower(params, xs).compile()
    compile_s = time.perf_counter() - start
    stats = step.memory_analysis()
    compiled = _status_kib()
    reset = _reset_peak()
    before = _status_kib()["VmRSS"]

    start = time.perf_counter()
    jax.block_until_ready(step(params, xs))  # warm-up: first-call allocations
    # Short steps are repeated for about a second (at most 30 times): a steadier median.
    reps = max(reps, min(30, int(1.0 / (time.perf_counter() - start))))
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(step(params, xs))  # host sync: the step has finished
        times.append(time.perf_counter() - start)
    after = _status_kib()
    device_after = _device_bytes()
    # clear_refs also resets ru_maxrss (both read the mm's high-water mark): after a reset the
    # process peak is the larger of the two windows' VmHWM.
    if reset:
        peak = max(compiled["VmHWM"], after["VmHWM"])
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    fields = ("temp", "argument", "output", "generated_code", "alias")
    xla = {f"xla_{f}_bytes": getattr(stats, f"{f}_size_in_bytes") for f in fields}
    xla["xla_peak_memory_bytes"] = stats.peak_memory_in_bytes  # CPU: arguments + outputs
    return {
        "cell": name,
        "B": B,
        "T": T,
        "D": D,
        "H": H,
        "remat": remat,
        "chunks": None if remat is None else -(-T // remat),
        **xla,
        "rss_base_mib": round(base / 1024, 1),
        "rss_compile_peak_mib": round((compiled["VmHWM"] - base) / 1024, 1),
        "rss_step_mib": round((after["VmHWM"] - before) / 1024, 1) if reset else None,
        "rss_process_mib": round((peak - base) / 1024, 1),
        "backend": jax.default_backend(),
        # An accelerator's allocator: its peak over the child's life (compilation's autotuning
        # buffers too) minus what was in use before compiling (params and xs). None on the CPU.
        "device_peak_mib": (
            round((device_after["peak_bytes_in_use"] - device["bytes_in_use"]) / MIB, 1)
            if device and device_after
            else None
        ),
        "compile_s": round(compile_s, 2),
        "median_ms": round(1e3 * statistics.median(times), 2),
        "min_ms": round(1e3 * min(times), 2),
        "reps": reps,
    }


# --- the parent: one subprocess per configuration ---------------------------------------------


def child_env() -> tuple[dict[str, str], str]:
    """The children's environment and a line saying what it does to the allocator."""
    env = dict(os.environ)
    if not malloc_env_wanted(env):
        return env, "glibc malloc: defaults (RNNLAB_MALLOC=0 or not glibc)"
    for key, value in MALLOC_ENV.items():
        env.setdefault(key, value)
    setting = " ".join(f"{k}={env[k]}" for k in MALLOC_ENV)
    return env, f"children use rnnlab's allocator setting ({setting}); RNNLAB_MALLOC=0: off"


def run_child(env, name, B, T, D, H, remat, reps) -> dict:
    cmd = [sys.executable, __file__, "--child", json.dumps([name, B, T, D, H, remat, reps])]
    child = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if child.returncode != 0:  # e.g. killed for memory: report it and go on
        tail = (child.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        print(f"  {name} T={T} remat={remat}: exit {child.returncode}: {tail}", file=sys.stderr)
        return {"cell": name, "T": T, "remat": remat, "error": tail}
    return json.loads(child.stdout.strip().splitlines()[-1])


def header() -> str:
    return (
        f"{'cell':5} {'T':>6} {'remat':>6} {'chunks':>6} {'xla_temp':>10} {'KiB/step':>9} "
        f"{'rss_step':>9} {'rss_proc':>9} {'median ms':>10} {'us/step':>8} {'mem/none':>8} "
        f"{'time/none':>9} {'dev_peak':>8}"
    )


def line(r: dict, none: dict | None) -> str:
    """One table row; ``none`` is the row without remat at the same T (for the ratios)."""
    remat = "-" if r["remat"] is None else str(r["remat"])
    if "error" in r:
        return f"{r['cell']:5} {r['T']:6d} {remat:>6}  failed: {r['error']}"
    temp = r["xla_temp_bytes"]
    rss = "n/a" if r["rss_step_mib"] is None else f"{r['rss_step_mib']:.1f}"
    mem = f"{temp / none['xla_temp_bytes']:.3f}" if none else "-"
    time_ = f"{r['median_ms'] / none['median_ms']:.2f}" if none else "-"
    return (
        f"{r['cell']:5} {r['T']:6d} {remat:>6} {r['chunks'] or '-':>6} {temp / MIB:10.1f} "
        f"{temp / r['T'] / 1024:9.1f} {rss:>9} {r['rss_process_mib']:9.1f} "
        f"{r['median_ms']:10.1f} {1e3 * r['median_ms'] / r['T']:8.1f} {mem:>8} {time_:>9} "
        f"{'-' if r.get('device_peak_mib') is None else r['device_peak_mib']:>8}"
    )


def plot(rows: list[dict], path: Path, title: str) -> None:
    """Two log-log panels against T: peak memory and median step time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_mem, ax_time) = plt.subplots(1, 2, figsize=(12, 4.8))
    # On an accelerator the solid line is its allocator's peak (dev_peak), on the CPU the RSS rise.
    device = any(r.get("device_peak_mib") is not None for r in rows)
    measured, what = ("device_peak_mib", "device peak") if device else ("rss_step_mib", "RSS")
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if "error" not in r:
            groups.setdefault((r["cell"], r["setting"]), []).append(r)
    colours = {}
    for (name, setting), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["T"])
        colour = colours.setdefault(setting, f"C{len(colours)}")
        marker = "o" if name == "lstm" else "s"
        label = f"{name}, remat={'none' if setting == 'none' else setting}"
        if setting == "sqrt":
            label += " (k=round(sqrt T))"
        Ts = [r["T"] for r in rs]
        peak = [r.get(measured) for r in rs]
        temp = [r["xla_temp_bytes"] / MIB for r in rs]
        if all(v is not None and v > 0 for v in peak):
            ax_mem.plot(Ts, peak, marker=marker, color=colour, label=f"{label}: {what}")
        ax_mem.plot(Ts, temp, marker=marker, color=colour, ls="--", mfc="none",
                    label=f"{label}: XLA temp")  # fmt: skip
        ax_time.plot(Ts, [r["median_ms"] for r in rs], marker=marker, color=colour, label=label)
    Ts = sorted({r["T"] for r in rows})
    none = {r["T"]: r for r in rows if r.get("setting") == "none" and "error" not in r}
    if Ts[0] in none:  # a guide: what grows exactly like T from the first no-remat point
        first = none[Ts[0]]["xla_temp_bytes"] / MIB
        ax_mem.plot(Ts, [first * T / Ts[0] for T in Ts], color="grey", ls=":", label="∝ T")
    for ax, ylabel in ((ax_mem, "peak memory of a step (MiB)"), (ax_time, "step time (ms)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T (steps)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    solid = "device allocator's peak" if device else "RSS rise"
    ax_mem.set_title(f"peak memory (solid: {solid}, dashed: XLA temp_size)", fontsize=9)
    ax_time.set_title("median wall time of forward + backward", fontsize=9)
    ax_mem.legend(fontsize=7)
    ax_time.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="T in {100, 300, 1000}")
    parser.add_argument("--cells", default="lstm", help="comma-separated: lstm, gru")
    parser.add_argument("--lengths", help="comma-separated T values (default: see --quick)")
    parser.add_argument("--remat", default="none,sqrt,100", help="none, sqrt and/or ints")
    parser.add_argument("--batch", type=int, default=16, help="B")
    parser.add_argument("--input", type=int, default=128, help="D")
    parser.add_argument("--hidden", type=int, default=128, help="H")
    parser.add_argument("--reps", type=int, default=5, help="timed steps per configuration")
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--plot", type=Path, help="write the two-panel PNG figure here")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one configuration, as JSON
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(*json.loads(args.child))))
        return

    default = QUICK_LENGTHS if args.quick else LENGTHS
    lengths = [int(t) for t in args.lengths.split(",")] if args.lengths else list(default)
    settings = args.remat.split(",")
    B, D, H = args.batch, args.input, args.hidden
    env, malloc_line = child_env()
    print(malloc_line)
    chip = jax.devices()[0].device_kind
    load = os.getloadavg()[0]
    print(f"backend {jax.default_backend()} ({chip}), {os.cpu_count()} CPUs, load {load:.2f}; "
          f"B={B}, D={D}, H={H}, float32; memory in MiB")  # fmt: skip
    print(header(), flush=True)
    rows = []
    for name in args.cells.split(","):
        for T in lengths:
            none, done = None, set()
            for setting in settings:
                k = chunk_length(setting, T)
                if k == 0 or k in done:  # e.g. "100" where round(sqrt(T)) is 100 too
                    continue
                done.add(k)
                r = run_child(env, name, B, T, D, H, k, args.reps)
                r["setting"] = setting
                rows.append(r)
                if setting == "none" and "error" not in r:
                    none = r
                print(line(r, none), flush=True)
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "backend": jax.default_backend(),
        "device_kind": chip,
        "load_average": [round(v, 2) for v in os.getloadavg()],  # others' load skews timings
        "versions": {"jax": jax.__version__, "numpy": np.__version__},
        "malloc": malloc_line,
        "B": B,
        "D": D,
        "H": H,
        "rows": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
        print(f"wrote {args.json}")
    if args.plot:
        where = "CPU" if jax.default_backend() == "cpu" else chip
        title = f"{args.cells} training step, B={B}, D={D}, H={H}, float32, {where}"
        plot(rows, args.plot, title)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
