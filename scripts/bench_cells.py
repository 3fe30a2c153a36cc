"""Times a training step of rnnlab's recurrent layers against Flax, PyTorch, Equinox and Keras.

    .venv/bin/python scripts/bench_cells.py                    # lstm, gru at three sizes
    .venv/bin/python scripts/bench_cells.py --rounds 5 --sizes 32,64,128,128
    .venv/bin/python scripts/bench_cells.py --autodiff         # also rnnlab without the fused
                                                               # scan (plain lax.scan autodiff)
    .venv/bin/python scripts/bench_cells.py --encoder          # the translation encoder, bilstm2
    .venv/bin/python scripts/bench_cells.py --cells lstm --sweep-axis T --plot lstm_T.png
    .venv/bin/python scripts/bench_cells.py --malloc off --json report.json

Peers need the ``bench`` extra (``RNNLAB_EXTRAS=test,bench scripts/test.sh``); each one that is
not installed is skipped. ``--peers`` picks some of them.

A step is forward + backward w.r.t. the params of loss = mean(ys^2) over a [B, T, D] batch, all
float32. Contenders for the cells lstm, gru and gru_paper:
    rnnlab    ``recurrent.unroll`` (the fused scan of rnnlab/cells/fused.py; for "gru" the
              reset-after form, whose equations are the peers'; "gru_paper" is Cho et al.'s
              reset-before form, rnnlab's default gru, timed against the same reset-after peers)
    flax      ``nn.RNN(OptimizedLSTMCell)`` / ``nn.RNN(GRUCell)``
    torch     ``nn.LSTM`` / ``nn.GRU`` (the pinned CPU build)
    equinox   ``eqx.nn.LSTMCell`` / ``GRUCell`` (unbatched) under ``lax.scan`` over time and
              ``jax.vmap`` over the batch, differentiated by ``eqx.filter_grad`` in ``filter_jit``
    keras     Keras 3 on its JAX backend: ``keras.layers.LSTM`` / ``GRU`` (return_sequences)
              in a Sequential model, the gradient of ``model.stateless_call`` by ``jax.grad``
              under ``jax.jit``, as the Keras guide to a JAX training loop writes it
    cudnn     JAX's cuDNN LSTM, ``jax.experimental.rnn.lstm`` (lstm and bilstm2 only; it has no
              GRU), timed only where JAX's default backend is a GPU: one flat weight vector in
              cuDNN's layout, ``seq_lengths`` for the encoder's padding
    rnnlab_dp, flax_dp
              the rnnlab and flax steps data parallel over ``--devices`` CPU devices (default one
              per core; the script sets JAX_NUM_CPU_DEVICES for its workers unless it is set):
              the batch split, the gradients averaged (``rnnlab.train.parallel``), one XLA
              thread per device. The other contenders run on the first device.
The cell "bilstm2" (``--encoder``) is the translation encoder of rnnlab/models/seq2seq.py: two
bidirectional LSTM layers (``recurrent.stack(..., bidirectional=True, lengths=...)``) on sequences
of lengths drawn uniformly from [T/2, T]; the loss is the mean square over the real steps. Its
peers are torch ``nn.LSTM(num_layers=2, bidirectional=True)`` on a ``pack_padded_sequence`` of the
same lengths (packing inside the step, as a training loop does it) and flax ``nn.Bidirectional``
of two ``nn.RNN(OptimizedLSTMCell)`` per layer with ``seq_lengths``. Its target (the issue "Speed
and memory") is rnnlab/torch <= 1.1.

Contenders run interleaved, one call of each in turn per round, so that load from other processes
hits them alike, in orders where every contender follows every other one equally often (what one
call leaves behind, such as PyTorch's spinning threads, then falls on every contender alike;
scripts/_interleave.py; before session 11 each round started one contender later, which kept
the same neighbours). The medians
over rounds are reported, with the ratios rnnlab/peer for every peer (< 1: rnnlab faster), as the
ratio of the medians (``ratio_rnnlab_*``, the table's columns) and as the median of each round's
ratio (``ratio_per_round_rnnlab_*``, the "per round" line under each row), which cancels load that
drifts between rounds. ``--sweep-axis`` times each contender over a range of T (25..400), B
(8..256) or H (64..1024; D stays), the other sizes fixed at the first ``--sizes`` entry (default
the middle size, 64,100,256,256), and ``--plot`` draws ms per step against it (log axes).

``--malloc both`` (the default) runs the measurements twice, each in a fresh process, since glibc
reads its variables only at start-up: "on" with experiments/_cli.py's ``MALLOC_ENV`` (malloc's large
blocks on huge pages), "off" with glibc's defaults; the JSON has both under ``runs``, the output a
table each and their ratio. The two runs are minutes apart, so load changes between them more than
between interleaved contenders. torch keeps libgomp's default wait policy, as a user runs it,
unless ``OMP_WAIT_POLICY`` is set. After each call its OpenMP threads spin at their barrier, which
takes the cores from the contender that runs next: interleaved with torch alone, the largest LSTM
step took 407 ms, and 354-367 ms with ``OMP_WAIT_POLICY=PASSIVE`` or ``GOMP_SPINCOUNT=0``. Those
settings slow torch down instead (386 against 353 ms; 33.6 against 17.2 ms at the smallest size).
Untimed pauses between the calls did not help. torch runs on
``--torch-threads`` (default: all CPUs).

On a GPU (JAX's default backend "gpu") every JAX contender runs there, torch runs on CUDA when
it sees the card (``torch.cuda.synchronize()`` ends its step, as ``block_until_ready`` ends
JAX's), the data-parallel contenders are left out (one device) and cudnn joins the peers. Each
library keeps its default float32 matmul precision on the GPU, as a user runs it; pass
``--malloc on``, since glibc's variables concern the host only. The table's title names the card.

Roofline: the FLOPs a step needs are those of its GEMMs, for a gated cell with k gates
(k = 4 LSTM, 3 GRU)
    2 * B * T * kH * (2D + 3H)
    (input term forward and dW_x: 2D; recurrent forward, dh backward and dW_h: 3H; dx is not
    needed). For bilstm2, over the N = sum(lengths) real steps, per layer and direction
    2 * N * 4H * (2D_l + 3H), with D_1 = D and D_2 = 2H, plus 2 * N * 4H * D_2 for layer 2's dx
    (layer 1's outputs need their gradient). ``roofline_ms`` is that count at the rate of one
    large [2048, 1024] x [1024, 1024] float32 GEMM measured here, and ``roofline_ratio`` =
    median_ms / roofline_ms (1 = as fast as the GEMMs alone could be).

This is a benchmark, not a test: it prints and asserts nothing.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from _interleave import round_orders

from experiments._cli import MALLOC_ENV, add_xla_cpu_flags
from experiments._cli import cores as _cores

add_xla_cpu_flags()  # before any JAX computation; see experiments/_cli.py

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from bench_contenders import (  # noqa: E402
    CELLS,
    ENCODER,
    PEERS,
    STEPS,
    encoder_lengths,
    flax_step,
    rnnlab_step,
    runs,
    torch_device,
    usable_peers,
)

torch = PEERS["torch"]  # None without the `bench` extra

SIZES = ((32, 64, 128, 128), (64, 100, 256, 256), (32, 128, 512, 512))  # (B, T, D, H)
ENCODER_SIZES = ((32, 50, 256, 256),)
ENCODER_TARGET = 1.1  # rnnlab / torch, the bound for the encoder
GATES = {"lstm": 4, "gru": 3, "gru_paper": 3, ENCODER: 4}
SWEEPS = {
    "T": (25, 50, 100, 200, 400),
    "B": (8, 16, 32, 64, 128, 256),
    "H": (64, 128, 256, 512, 1024),
}
AXIS_LABELS = {"T": "T, time steps", "B": "B, batch size", "H": "H, hidden units (D fixed)"}
MALLOC_MODES = {"on": "MALLOC_ENV set (glibc malloc on huge pages)", "off": "glibc defaults"}


def needed_flops(cell: str, B, T, D, H, lengths=None) -> int:
    """GEMM FLOPs of one forward + backward w.r.t. the params (see the module docstring)."""
    if cell != ENCODER:
        return 2 * B * T * GATES[cell] * H * (2 * D + 3 * H)
    n = int(np.sum(lengths))
    layer_1 = 2 * n * 4 * H * (2 * D + 3 * H)
    layer_2 = 2 * n * 4 * H * (2 * 2 * H + 3 * H) + 2 * n * 4 * H * 2 * H  # + dx
    return 2 * (layer_1 + layer_2)  # two directions


def gemm_gflops(repeats: int = 10) -> float:
    """The float32 rate of one large GEMM, [2048, 1024] x [1024, 1024], best of ``repeats``."""
    a = jax.random.normal(jax.random.key(0), (2048, 1024))
    b = jax.random.normal(jax.random.key(1), (1024, 1024))
    f = jax.jit(jnp.matmul)
    f(a, b).block_until_ready()
    best = min(_time(lambda: f(a, b).block_until_ready()) for _ in range(repeats))
    return 2 * 2048 * 1024 * 1024 / best / 1e9


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# --- measuring -------------------------------------------------------------------------------


def _per_round(times, peer_times) -> float:
    """The median of each round's ratio: load that drifts between rounds cancels."""
    return round(statistics.median([a / b for a, b in zip(times, peer_times)]), 3)


def bench_size(name: str, size, rounds: int, autodiff: bool, peers, devices: int = 1) -> dict:
    B, T, D, H = size
    lengths = encoder_lengths(B, T) if name == ENCODER else None
    steps = {"rnnlab": rnnlab_step(name, *size, lengths)}
    if autodiff:
        steps["rnnlab_autodiff"] = rnnlab_step(name, *size, lengths, fused=False)
    failed = {}
    # Data parallel over `devices` CPU devices: rnnlab, and Flax the same way (it is JAX's
    # sharding, not rnnlab's cells, that spreads the step over the cores).
    if devices > 1 and name != ENCODER:
        dp = {"rnnlab_dp": rnnlab_step}
        dp |= {"flax_dp": flax_step} if "flax" in peers else {}
        for k, make in dp.items():
            try:
                steps[k] = make(name, *size, devices=devices)
            except ValueError as e:  # B not divisible by the devices
                failed[k] = str(e)
    for peer in peers:
        if runs(peer, name):
            try:
                steps[peer] = STEPS[peer](name, *size, lengths)
                steps[peer]()  # compiles
            except Exception as e:  # a peer's failure is reported in the row, not fatal
                failed[peer] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
                steps.pop(peer, None)
    for step in steps.values():  # compile and warm up
        step()
        step()
    times = {k: [] for k in steps}
    # Interleaved, one call of each contender per round, in orders where every contender follows
    # every other equally often (_interleave.py): what a call leaves behind (PyTorch's spinning
    # OpenMP threads, a cold cache) does not always fall on the same neighbour.
    for order in round_orders(list(steps), rounds):
        for k in order:
            times[k].append(_time(steps[k]))
    median = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    result = {"cell": name, "B": B, "T": T, "D": D, "H": H}
    if lengths is not None:
        result["lengths_sum"] = int(lengths.sum())
        result["target_ratio_rnnlab_torch"] = ENCODER_TARGET
    result["median_ms"] = {k: round(v, 3) for k, v in median.items()}
    result["min_ms"] = {k: round(1e3 * min(v), 3) for k, v in times.items()}
    for k in median:
        if k != "rnnlab":
            peer = k.removeprefix("rnnlab_")
            result[f"ratio_rnnlab_{peer}"] = round(median["rnnlab"] / median[k], 3)
            result[f"ratio_per_round_rnnlab_{peer}"] = _per_round(times["rnnlab"], times[k])
    if "rnnlab_dp" in median:  # the data-parallel step against the peers' best
        for k in ("torch", "flax", "flax_dp"):
            if k in median:
                result[f"ratio_dp_{k}"] = round(median["rnnlab_dp"] / median[k], 3)
                result[f"ratio_per_round_dp_{k}"] = _per_round(times["rnnlab_dp"], times[k])
    if failed:
        result["failed"] = failed
    result["flop"] = needed_flops(name, *size, lengths)
    result["gflop"] = round(result["flop"] / 1e9, 3)
    return result


def plan(args) -> list[tuple[str, tuple]]:
    """(cell, (B, T, D, H)) in the order they are measured."""
    names = args.cells.split(",")
    if args.sweep_axis:
        base = args.sizes[0] if args.sizes else SIZES[1]
        index = "BTDH".index(args.sweep_axis)
        values = args.sweep_values or SWEEPS[args.sweep_axis]
        return [(n, base[:index] + (v,) + base[index + 1 :]) for n in names for v in values]
    if args.sizes:
        return [(n, s) for n in names for s in args.sizes]
    return [(n, s) for n in names for s in (ENCODER_SIZES if n == ENCODER else SIZES)]


def measure(args) -> dict:
    """One process's measurements: every planned (cell, size) and the GEMM rate."""
    if torch is not None:
        torch.set_num_threads(args.torch_threads)
    peers = usable_peers(args.peers)
    devices = args.devices if jax.default_backend() == "cpu" else 1  # data parallel: CPU only
    rate = gemm_gflops()
    results = []
    for name, size in plan(args):
        r = bench_size(name, size, args.rounds, args.autodiff, peers, devices)
        roofline_ms = 1e3 * r["flop"] / 1e9 / rate  # not r["gflop"]: tiny sizes round to 0
        r["roofline_ms"] = round(roofline_ms, 3)
        r["roofline_ratio"] = round(r["median_ms"]["rnnlab"] / roofline_ms, 2)
        r["roofline_ratios"] = {k: round(v / roofline_ms, 2) for k, v in r["median_ms"].items()}
        results.append(r)
        print(f"  {name} {size}: {r['median_ms']}", file=sys.stderr, flush=True)
    return {
        "malloc_env": {k: os.environ.get(k) for k in MALLOC_ENV},
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_average": [round(v, 2) for v in os.getloadavg()],  # others' load skews timings
        "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "gemm_gflops": round(rate, 1),
        "backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "torch_device": torch_device() if torch is not None else None,
        "devices": jax.device_count(),
        "results": results,
    }


def run_in_subprocess(mode: str, argv: list[str], args) -> dict:
    """``measure`` in a fresh interpreter with MALLOC_ENV set ("on") or removed ("off")."""
    env = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}
    if mode == "on":
        env.update(MALLOC_ENV)
    env.setdefault("JAX_NUM_CPU_DEVICES", str(args.devices))  # before the child imports jax
    print(f"malloc {mode} ({MALLOC_MODES[mode]}):", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "run.json")
        cmd = [sys.executable, os.path.abspath(__file__), *argv, "--worker", path]
        subprocess.run(cmd, env=env, check=True)
        with open(path) as f:
            return json.load(f)


def machine() -> dict:
    model = platform.processor() or platform.machine()
    mem = None
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if "model name" in ln), model)
        with open("/proc/meminfo") as f:
            mem = round(int(f.readline().split()[1]) / 2**20, 1)  # MemTotal, kB -> GiB
    except OSError:
        pass
    try:
        glibc = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):  # not glibc
        glibc = None
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": mem,
        "os": platform.platform(),
        "libc": glibc,
        "python": platform.python_version(),
    }


def versions() -> dict:
    out = {}
    dists = ("rnnlab", "jax", "jaxlib", "flax", "numpy", "torch", "equinox", "keras")
    dists += tuple(f"jax-cuda{v}-plugin" for v in (12, 13))  # JAX's CUDA backend, if any
    for dist in dists:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


# --- output ------------------------------------------------------------------------------------


def accelerator(run: dict) -> str | None:
    """The chip that ran a GPU run's steps, for titles ("NVIDIA H100 ... (torch on cuda)");
    None on the CPU."""
    if run.get("backend", "cpu") == "cpu":
        return None
    return f"{run['device_kind']} (torch on {run['torch_device']})"


def print_table(results, title: str):
    """ms per contender, then the ratios: rnnlab / peer, and rnnlab_dp / torch, flax_dp."""
    names = ["rnnlab", "rnnlab_dp", "flax", "flax_dp", "torch", "cudnn", "equinox", "keras"]
    names.append("rnnlab_autodiff")
    present = [n for n in names if any(n in r["median_ms"] for r in results)]
    ratios = [(f"/{n}", f"ratio_rnnlab_{n}") for n in present if n in PEERS]
    if "rnnlab_dp" in present:
        ratios += [(f"dp/{n}", f"ratio_dp_{n}") for n in ("torch", "flax_dp") if n in present]
    ms_cols = [max(9, len(n) + 3) for n in present]
    print(f"\n{title}\n{'cell':9} {'B,T,D,H':>16} ", end="")
    print(" ".join(f"{n + ' ms':>{w}}" for n, w in zip(present, ms_cols)), end=" ")
    print(" ".join(f"{label:>{max(7, len(label))}}" for label, _ in ratios), f"{'roofline':>8}")
    for r in results:
        size = f"{r['B']},{r['T']},{r['D']},{r['H']}"
        ms = " ".join(
            f"{r['median_ms'].get(n, float('nan')):{w}.2f}" for n, w in zip(present, ms_cols)
        )
        cols = " ".join(
            f"{r.get(key, float('nan')):{max(7, len(label))}.3f}" for label, key in ratios
        )
        print(f"{r['cell']:9} {size:>16} {ms} {cols} {r['roofline_ratio']:8.2f}")
        per_round = [
            f"{label} {r[key.replace('ratio_', 'ratio_per_round_', 1)]:.3f}"
            for label, key in ratios
            if key.replace("ratio_", "ratio_per_round_", 1) in r
        ]
        if per_round:
            print(f"{'':26} per round: {'  '.join(per_round)}")
        for peer, why in r.get("failed", {}).items():
            print(f"    {peer} failed: {why}")
    if any(r["cell"] == ENCODER for r in results):
        print(f"    {ENCODER} target: rnnlab/torch <= {ENCODER_TARGET}")


def print_malloc_ratio(runs):
    """Median ms with MALLOC_ENV / without, per row and contender (< 1: the variables help)."""
    print("\nmalloc on / off (median ms with MALLOC_ENV over median ms with glibc defaults)")
    for on, off in zip(runs["on"]["results"], runs["off"]["results"]):
        size = f"{on['B']},{on['T']},{on['D']},{on['H']}"
        cols = "  ".join(
            f"{k} {v / off['median_ms'][k]:.3f}"
            for k, v in on["median_ms"].items()
            if k in off["median_ms"]
        )
        print(f"{on['cell']:9} {size:>16}  {cols}")


def plot(report: dict, path: str):
    """ms per step against the swept size, one panel per cell, one colour per contender."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    axis, runs = report["sweep"]["axis"], report["runs"]
    names = list(dict.fromkeys(r["cell"] for run in runs.values() for r in run["results"]))
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4.5), squeeze=False)
    colours, styles = {}, {"on": "-", "off": "--"}
    for ax, name in zip(axes[0], names):
        for i, (mode, run) in enumerate(runs.items()):
            rows = [r for r in run["results"] if r["cell"] == name]
            for k in dict.fromkeys(k for r in rows for k in r["median_ms"]):
                pts = [(r[axis], r["median_ms"][k]) for r in rows if k in r["median_ms"]]
                colour = colours.setdefault(k, f"C{len(colours)}")
                label = k if i == 0 else None  # one legend entry per contender
                ax.plot(*zip(*pts), styles[mode], color=colour, marker="o", label=label)
        fixed = ", ".join(f"{a}={rows[0][a]}" for a in "BTDH" if a != axis)
        lines = " / ".join(f"{styles[m]} malloc {m}" for m in runs)
        ax.set(xscale="log", yscale="log", xlabel=AXIS_LABELS[axis])
        ax.set_xticks(report["sweep"]["values"], [str(v) for v in report["sweep"]["values"]])
        ax.set_xticks([], minor=True)
        ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))  # 1, 2, 5, 10, 20, ... ms
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set(ylabel="ms per training step (median)", title=f"{name}: step time vs {axis}")
        text = f"{fixed}, float32\n{lines}"
        ax.text(0.02, 0.98, text, transform=ax.transAxes, va="top", fontsize=8)
        ax.legend(fontsize=7)
    where = f"{report['machine']['cpu']}, {report['machine']['cpus']} CPUs"
    chip = accelerator(next(iter(runs.values())))
    fig.suptitle(f"{chip}; host {where}" if chip else where, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", default="lstm,gru", help=f"comma-separated: {', '.join(CELLS)}")
    parser.add_argument("--encoder", action="store_true", help=f"same as --cells {ENCODER}")
    parser.add_argument("--sizes", nargs="*", help="B,T,D,H each; default: the issue's sizes")
    parser.add_argument("--rounds", type=int, default=15, help="timed calls per contender")
    parser.add_argument("--autodiff", action="store_true", help="also time plain autodiff")
    parser.add_argument(
        "--peers",
        help="comma-separated peers (default: every installed one; cudnn where JAX has a GPU)",
    )
    parser.add_argument(
        "--torch-threads", type=int, default=os.cpu_count() or 1, help="default: all CPUs"
    )
    parser.add_argument(
        "--devices",
        type=int,
        default=_cores(),
        help="CPU devices of the data-parallel contenders rnnlab_dp and flax_dp (default: one "
        "per core); 1 leaves them out",
    )
    parser.add_argument("--sweep-axis", choices=tuple(SWEEPS), help="time over a range of T|B|H")
    parser.add_argument("--sweep-values", help="comma-separated sizes; default: SWEEPS[axis]")
    parser.add_argument("--plot", help="with --sweep-axis: write the plot here (PNG)")
    parser.add_argument("--malloc", choices=("both", "on", "off"), default="both")
    parser.add_argument("--json", help="write the full report here (else print it)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # a child: write its run here
    args = parser.parse_args(argv)
    if args.encoder:
        args.cells = ENCODER
    for name in args.cells.split(","):
        if name not in CELLS:
            parser.error(f"--cells: unknown cell {name!r}; known: {', '.join(CELLS)}")
    args.peers = None if args.peers is None else [p for p in args.peers.split(",") if p]
    for p in args.peers or ():
        if p not in PEERS:
            parser.error(f"--peers: unknown peer {p!r}; known: {', '.join(PEERS)}")
        if PEERS[p] is None:
            parser.error(f"--peers: {p} is not installed (RNNLAB_EXTRAS=test,bench)")
    try:
        args.sizes = [tuple(int(v) for v in s.split(",")) for s in args.sizes or ()]
        args.sweep_values = (
            [int(v) for v in args.sweep_values.split(",")] if args.sweep_values else None
        )
    except ValueError as e:
        parser.error(f"--sizes / --sweep-values: expected integers: {e}")
    if any(len(s) != 4 or min(s) < 1 for s in args.sizes):
        parser.error(f"--sizes: expected positive B,T,D,H each, got {args.sizes}")
    if args.devices < 1:
        parser.error(f"--devices: expected a positive integer, got {args.devices}")
    if (args.sweep_values or args.plot) and not args.sweep_axis:
        parser.error("--sweep-values and --plot need --sweep-axis")
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:  # a child process: measure, write, no table
        with open(args.worker, "w") as f:
            json.dump(measure(args), f)
        return
    modes = ("on", "off") if args.malloc == "both" else (args.malloc,)
    runs = {mode: run_in_subprocess(mode, argv, args) for mode in modes}
    report = {"machine": machine(), "versions": versions(), "command": argv}
    report |= {"torch_threads": args.torch_threads if torch is not None else None}
    report |= {"rounds": args.rounds, "malloc": {m: MALLOC_MODES[m] for m in modes}, "runs": runs}
    if args.sweep_axis:
        values = sorted({r[args.sweep_axis] for r in runs[modes[0]]["results"]})
        report["sweep"] = {"axis": args.sweep_axis, "values": values}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    else:
        print(json.dumps(report, indent=1))
    found = ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v)
    print(f"\n{report['machine']['cpu']}, {report['machine']['cpus']} CPUs; {found}")
    for mode, run in runs.items():
        rate, load = run["gemm_gflops"], run["load_average"]
        title = f"malloc {mode}: {MALLOC_MODES[mode]}; GEMM {rate} GFLOP/s, load average {load}"
        chip = accelerator(run)
        title = f"{chip}; {title}" if chip else title
        print_table(run["results"], title)
    if len(runs) == 2:
        print_malloc_ratio(runs)
    if args.plot:
        plot(report, args.plot)
    for path in (args.json, args.plot):
        if path:
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
