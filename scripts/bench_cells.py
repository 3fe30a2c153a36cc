"""Times a training step of rnnlab's LSTM and GRU against Flax and (optionally) PyTorch on CPU.

    .venv/bin/python scripts/bench_cells.py                    # all sizes, JSON + a table
    .venv/bin/python scripts/bench_cells.py --rounds 5 --sizes 32,64,128,128
    .venv/bin/python scripts/bench_cells.py --autodiff         # also rnnlab without the fused
                                                               # scan (plain lax.scan autodiff)

A step is forward + backward w.r.t. the params of loss = mean(ys^2) over a [B, T, D] batch:
rnnlab ``recurrent.unroll`` (the fused scan of rnnlab/cells/fused.py; for "gru" the reset-after
form, whose equations are Flax's and PyTorch's), Flax
``nn.RNN(OptimizedLSTMCell)`` / ``nn.RNN(GRUCell)``, and PyTorch ``nn.LSTM`` / ``nn.GRU`` when the
optional ``bench`` extra (torch) is installed. All float32. Contenders run interleaved, one call
of each in turn per round, so that load from other processes hits them alike; the medians over
rounds are reported, with the ratios rnnlab/flax and rnnlab/torch (< 1: rnnlab faster).

Roofline: the FLOPs a step needs are those of its GEMMs, for a gated cell with k gates
(k = 4 LSTM, 3 GRU)
    2 * B * T * kH * (2D + 3H)
    (input term forward and dW_x: 2D; recurrent forward, dh backward and dW_h: 3H; dx is not
    needed). ``roofline_ms`` is that count at the rate of one large [2048, 1024] x [1024, 1024]
    float32 GEMM measured here, and ``roofline_ratio`` = median_ms / roofline_ms (1 = as fast as
    the GEMMs alone could be).

This is a benchmark, not a test: it prints and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import cells, recurrent

try:
    import torch
except ImportError:  # the optional `bench` extra
    torch = None

SIZES = ((32, 64, 128, 128), (64, 100, 256, 256), (32, 128, 512, 512))  # (B, T, D, H)
# rnnlab cell per benchmark name. "gru" is the reset-after form, the equations of Flax's GRUCell
# and PyTorch's nn.GRU; "gru_paper" (Cho et al.'s reset-before form, rnnlab's default gru, two
# dependent matmuls per step) can be timed on request against the same contenders.
CELLS = {
    "lstm": ("lstm", {}),
    "gru": ("gru", {"reset_after": True}),
    "gru_paper": ("gru", {"reset_after": False}),
}
GATES = {"lstm": 4, "gru": 3, "gru_paper": 3}


def needed_flops(cell: str, B: int, T: int, D: int, H: int) -> int:
    """GEMM FLOPs of one forward + backward w.r.t. the params (see the module docstring)."""
    return 2 * B * T * GATES[cell] * H * (2 * D + 3 * H)


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


def _mean_square(ys):
    return jnp.mean(ys * ys)


def rnnlab_step(name: str, B, T, D, H, fused: bool = True):
    cell = cells.get(CELLS[name][0], **CELLS[name][1])
    if not fused:
        cell = cell.replace(scan=None)  # plain lax.scan over step, differentiated by autodiff
    k_p, k_x = jax.random.split(jax.random.key(0))
    params = cell.init(k_p, D, H)
    xs = jax.random.normal(k_x, (B, T, D))

    def loss(params, xs):
        return _mean_square(recurrent.unroll(cell, params, xs)[1])

    grad = jax.jit(jax.grad(loss))
    return lambda: jax.block_until_ready(grad(params, xs))


def flax_step(name: str, B, T, D, H):
    make = nn.OptimizedLSTMCell if name == "lstm" else nn.GRUCell
    model = nn.RNN(make(features=H))
    k_p, k_x = jax.random.split(jax.random.key(0))
    xs = jax.random.normal(k_x, (B, T, D))
    variables = model.init(k_p, xs)

    def loss(variables, xs):
        return _mean_square(model.apply(variables, xs))

    grad = jax.jit(jax.grad(loss))
    return lambda: jax.block_until_ready(grad(variables, xs))


def torch_step(name: str, B, T, D, H):
    torch.manual_seed(0)
    model = (torch.nn.LSTM if name == "lstm" else torch.nn.GRU)(D, H, batch_first=True)
    xs = torch.randn(B, T, D)

    def step():
        for p in model.parameters():
            p.grad = None
        ys, _ = model(xs)
        ys.pow(2).mean().backward()

    return step


def bench_size(name: str, size, rounds: int, autodiff: bool) -> dict:
    B, T, D, H = size
    steps = {"rnnlab": rnnlab_step(name, *size), "flax": flax_step(name, *size)}
    if autodiff:
        steps["rnnlab_autodiff"] = rnnlab_step(name, *size, fused=False)
    if torch is not None:
        steps["torch"] = torch_step(name, *size)
    for step in steps.values():  # compile and warm up
        step()
        step()
    times = {k: [] for k in steps}
    for _ in range(rounds):  # interleaved: one call of each contender per round
        for k, step in steps.items():
            times[k].append(_time(step))
    median = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    result = {
        "cell": name,
        "B": B,
        "T": T,
        "D": D,
        "H": H,
        "median_ms": {k: round(v, 3) for k, v in median.items()},
        "min_ms": {k: round(1e3 * min(v), 3) for k, v in times.items()},
        "ratio_rnnlab_flax": round(median["rnnlab"] / median["flax"], 3),
    }
    if "torch" in median:
        result["ratio_rnnlab_torch"] = round(median["rnnlab"] / median["torch"], 3)
    if "rnnlab_autodiff" in median:
        result["ratio_rnnlab_autodiff"] = round(median["rnnlab"] / median["rnnlab_autodiff"], 3)
    result["gflop"] = round(needed_flops(name, *size) / 1e9, 3)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", default="lstm,gru", help="comma-separated: lstm, gru, gru_paper")
    parser.add_argument("--sizes", nargs="*", help="B,T,D,H each; default: the issue's three")
    parser.add_argument("--rounds", type=int, default=15, help="timed calls per contender")
    parser.add_argument("--autodiff", action="store_true", help="also time plain autodiff")
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in s.split(",")) for s in args.sizes] if args.sizes else SIZES
    if torch is not None:
        torch.set_num_threads(os.cpu_count() or 1)

    rate = gemm_gflops()
    results = []
    for name in args.cells.split(","):
        for size in sizes:
            r = bench_size(name, size, args.rounds, args.autodiff)
            roofline_ms = 1e3 * r["gflop"] / rate
            r["roofline_ms"] = round(roofline_ms, 3)
            r["roofline_ratio"] = round(r["median_ms"]["rnnlab"] / roofline_ms, 2)
            results.append(r)
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "load_average": [round(v, 2) for v in os.getloadavg()],  # others' load skews timings
        "versions": {
            "jax": jax.__version__,
            "flax": flax.__version__,
            "torch": None if torch is None else torch.__version__,
            "numpy": np.__version__,
        },
        "rounds": args.rounds,
        "gemm_gflops": round(rate, 1),
        "results": results,
    }
    print(json.dumps(report, indent=1))
    print_table(results)


def print_table(results):
    names = ["rnnlab", "flax", "torch", "rnnlab_autodiff"]
    present = [n for n in names if any(n in r["median_ms"] for r in results)]
    header = f"{'cell':5} {'B,T,D,H':>16} " + " ".join(f"{n + ' ms':>18}" for n in present)
    print("\n" + header + f" {'/flax':>7} {'/torch':>7} {'roofline':>8}")
    for r in results:
        size = f"{r['B']},{r['T']},{r['D']},{r['H']}"
        cols = " ".join(f"{r['median_ms'].get(n, float('nan')):18.2f}" for n in present)
        torch_ratio = r.get("ratio_rnnlab_torch", float("nan"))
        print(
            f"{r['cell']:5} {size:>16} {cols} {r['ratio_rnnlab_flax']:7.3f} {torch_ratio:7.3f} "
            f"{r['roofline_ratio']:8.2f}"
        )


if __name__ == "__main__":
    main()
