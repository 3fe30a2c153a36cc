"""Time per sweep step of N models under each strategy, against N separate single-model steps.

    .venv/bin/python scripts/bench_sweeps.py [--quick] [--json results.json]

The matrix: N in {1, 5, 15, 30}, LSTM and GRU with hidden size in {32, 64, 128}, T = 100,
batch 64, one training step = forward + backward + Adam on the adding task, for every strategy
of ``rnnlab.train.sweep``. The separate baseline is a Python loop of N jitted single-model steps,
measured in the same process. ``--quick`` runs LSTM 64 with N in {5, 15} only.

This script sets JAX_NUM_CPU_DEVICES to the number of CPU cores before importing jax (unless it
is already set), so that the "sharded" strategies have one device per core; the single-model
baseline runs on one of those devices. Times are medians of several repetitions, in ms, the
sweep and its baseline timed in turn (one call of each per round), and depend on whatever else
is running on the machine: report the load with the numbers. "ratio" is the sweep's median over
the baseline's; "rounds" (``ratio_per_round``) the median of each round's sweep over that round's
baseline, which cancels load that drifts between rounds.

Prints a table, then the rows as one JSON line (also written to --json when given).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_NUM_CPU_DEVICES", str(os.cpu_count() or 1))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _interleave import round_orders  # noqa: E402

from experiments._cli import add_xla_cpu_flags  # noqa: E402

add_xla_cpu_flags()  # as the launchers do (see experiments/_cli.py, XLA_CPU_FLAGS)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from rnnlab import cells  # noqa: E402
from rnnlab.data import tasks  # noqa: E402
from rnnlab.models import sequence  # noqa: E402
from rnnlab.train import parallel, state, step, sweep  # noqa: E402

STRATEGIES = ("vmap", "map", "vmap:4", "sharded", "sharded:vmap", "sharded:vmap:2")
SEQ_LEN, BATCH = 100, 64


def models(cell_name: str, hidden_size: int):
    """(init_one, step_one, split_one) of one model on adding; hparams {"seed": int32 []}.

    split_one is step_one with its batch split over the sweep's devices (``sweep.step_models``
    runs the models a sharded round leaves that way).
    """
    task = tasks.get("adding")
    tx = step.optimizer("adam", 1e-3)
    model = sequence.make(
        cells.get(cell_name), input_size=2, hidden_size=hidden_size, output_size=1
    )

    def loss_fn(params, batch, key):
        return task.loss(model.apply(params, batch["inputs"]), batch), {}

    def source(h):
        k_init, k_train, k_data = jax.random.split(jax.random.key(h["seed"]), 3)
        return tasks.source(task, k_data, BATCH, SEQ_LEN), k_init, k_train

    def init_one(h):
        src, k_init, k_train = source(h)
        return state.create(model.init(k_init), tx, k_train, src.init())

    def step_one(s, h):
        src, _, _ = source(h)
        return step.make_step(loss_fn, tx, src.next)(s)

    split_grad = parallel.local_batch_grad(loss_fn, sweep.SPLIT)

    def split_one(s, h):
        src, _, _ = source(h)
        return step.make_step(loss_fn, tx, src.next, grad_fn=split_grad)(s)

    return init_one, step_one, split_one


def interleaved_ms(fns, reps: int) -> list[list[float]]:
    """The ms of each function's calls, timed in turn ``reps`` times (one call of each per round).

    Interleaving keeps a sweep and its separate baseline under the same conditions: on the
    shared 2-core machine one program's time can swing by 1.3x between phases of a run. The
    rounds alternate which goes first (_interleave.py), so each follows the other as often as
    itself.
    """
    for fn in fns:
        fn()  # compile and warm up
    times = [[] for _ in fns]
    for order in round_orders(list(range(len(fns))), reps):
        for k in order:
            start = time.perf_counter()
            fns[k]()
            times[k].append(1e3 * (time.perf_counter() - start))
    return times


def bench(
    cell_name: str, hidden_size: int, n: int, strategies, reps: int, split: bool = True
) -> list[dict]:
    init_one, step_one, split_one = models(cell_name, hidden_size)
    split_one = split_one if split else None
    hparams = {"seed": jnp.arange(n, dtype=jnp.int32)}
    one_step = jax.jit(step_one)
    singles = [jax.jit(init_one)({"seed": jnp.int32(i)}) for i in range(n)]

    def separate():
        out = [one_step(s, {"seed": jnp.int32(i)}) for i, s in enumerate(singles)]
        jax.block_until_ready(out)  # host sync: the time of all N steps

    rows = []
    for name in strategies:
        states = jax.jit(sweep.init_models(init_one, hparams, name))()
        run = jax.jit(sweep.step_models(step_one, hparams, name, split_one=split_one))
        swept = lambda run=run, states=states: jax.block_until_ready(run(states))  # noqa: E731
        base_ms, sweep_ms = interleaved_ms((separate, swept), reps)
        base, ms = statistics.median(base_ms), statistics.median(sweep_ms)
        rows.append(
            {
                "cell": cell_name,
                "hidden_size": hidden_size,
                "n": n,
                "strategy": name,
                "resolved": sweep.resolve(name, num_models=n),
                "split": split,
                "ms": round(ms, 2),
                "separate_ms": round(base, 2),
                "ratio": round(ms / base, 3),
                # Each round's sweep over the same round's baseline: what drifts between rounds
                # (the machine's load) cancels.
                "ratio_per_round": round(
                    statistics.median(m / b for m, b in zip(sweep_ms, base_ms)), 3
                ),
            }
        )
        print(_line(rows[-1]), flush=True)
    return rows


def _line(r: dict) -> str:
    return (
        f"{r['cell']:5s} {r['hidden_size']:4d} {r['n']:3d} {r['strategy']:14s} "
        f"{r['resolved']:14s} {r['ms']:9.1f} {r['separate_ms']:9.1f} {r['ratio']:6.2f} "
        f"{r['ratio_per_round']:6.2f}"
    )


def _counts(text: str) -> list[int]:
    """--n: "5,15" -> [5, 15]; anything but positive integers is a usage error."""
    try:
        ns = [int(n) for n in text.split(",")]
    except ValueError:
        ns = []
    if not ns or min(ns) < 1:
        raise argparse.ArgumentTypeError(
            f"expected positive integers, comma-separated; got {text!r}"
        )
    return ns


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="LSTM 64, N in {5, 15}")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per entry")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--strategy", help="time this strategy only, in this process")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per strategy")
    parser.add_argument("--no-split", action="store_true",
                        help="no split_one: a sharded round short of models is padded")  # fmt: skip
    parser.add_argument(
        "--n", type=_counts, help="comma-separated N, e.g. 5,15 (default 1,5,15,30)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        matrix = [("lstm", 64, n) for n in (5, 15)]
    else:
        ns = args.n or (1, 5, 15, 30)
        matrix = [(c, h, n) for c in ("lstm", "gru") for h in (32, 64, 128) for n in ns]
    if args.strategy:  # the child: one strategy, rows as one JSON line on the last line
        rows = []
        for cell_name, hidden_size, n in matrix:
            rows += bench(cell_name, hidden_size, n, (args.strategy,), args.reps, not args.no_split)
        print(json.dumps(rows))
        return
    # Each strategy runs in a process of its own: in one process, single-device programs run
    # after a 2-device (sharded) one were seen to hang in block_until_ready.
    print(f"backend {jax.default_backend()}, {jax.device_count()} devices, T={SEQ_LEN}, B={BATCH}")
    print(f"{'cell':5s} {'H':>4s} {'N':>3s} {'strategy':14s} {'resolved':14s} "
          f"{'sweep ms':>9s} {'sep. ms':>9s} {'ratio':>6s} {'rounds':>6s}")  # fmt: skip
    rows = []
    hung = []
    for strategy in ("auto", *STRATEGIES):
        cmd = [sys.executable, __file__, "--strategy", strategy, "--reps", str(args.reps)]
        cmd += ["--no-split"] * args.no_split
        cmd += ["--n", ",".join(map(str, args.n))] if args.n else []
        try:
            child = subprocess.run(cmd + (["--quick"] if args.quick else []), capture_output=True,
                                   text=True, check=True, timeout=args.timeout)  # fmt: skip
        except subprocess.TimeoutExpired:
            # XLA:CPU's thread pool was seen to wedge for good on vmapped sweeps (see
            # experiments/_cli.py, XLA_CPU_FLAGS): report it and go on with the next strategy.
            print(f"{strategy}: no result after {args.timeout} s (hung); skipped", flush=True)
            hung.append(strategy)
            continue
        lines = child.stdout.strip().splitlines()
        print("\n".join(lines[:-1]), flush=True)
        rows += json.loads(lines[-1])
    out = {"devices": jax.device_count(), "cpu_count": os.cpu_count(), "rows": rows, "hung": hung}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
