"""Probes of XLA:CPU for the recurrent training step: matmul back ends, kernel shapes, loops.

    .venv/bin/python scripts/probe_xla_cpu.py flags                 # LSTM step, 32,64,128,128
    .venv/bin/python scripts/probe_xla_cpu.py flags --cell gru --size 64,100,256,256 --rounds 25
    .venv/bin/python scripts/probe_xla_cpu.py alone                 # rnnlab, then torch, alone
    .venv/bin/python scripts/probe_xla_cpu.py gemm                  # the step's GEMMs, 3 sizes
    .venv/bin/python scripts/probe_xla_cpu.py loop                  # the forward loop, 3 sizes
    .venv/bin/python scripts/probe_xla_cpu.py loop --json loop.json
    .venv/bin/python scripts/probe_xla_cpu.py threads               # who uses the second core

What docs/performance.md ("More levers, measured in session 8" and "Session 10") reports, so that
the next try at the one-device LSTM gap starts from measurements, not guesses:

flags  scripts/bench_cells.py's rnnlab training step (bench_contenders.rnnlab_step) under each
       XLA:CPU setting of ``SETTINGS`` (XLA_FLAGS: Eigen's threads, oneDNN, XNNPACK, YNNPACK off,
       multi-output fusion off, a loop as one function, ...),
       each in a worker process of its own (XLA reads its flags once), called in turn, one
       call per worker per round, every worker following every other equally often
       (_interleave.py). ``default_copy`` is a
       second process with the default setting: how far two copies of the same step drift
       apart is the noise floor of the comparison. ``--torch`` adds PyTorch's nn.LSTM / nn.GRU.
alone  The same workers one at a time (``--settings``, default: default,torch): each starts,
       warms up, makes ``--rounds`` calls and exits before the next starts, ``--passes`` times
       over; per setting the median of its passes' medians. Nothing else runs beside it, as
       when a user trains one model (the interleaved modes time each call right after
       another contender's, whose spinning threads and caches it inherits).
       ``default_after_dp`` times the same one-device step in a process that has first run
       the data-parallel step on two CPU devices.
gemm   GFLOP/s of the GEMMs of one step (the input projection, a weight gradient, the loop's
       recurrent matmul) under each back end, and PyTorch's torch.mm where installed.
loop   The LSTM forward loop (lax.scan over T steps, no gradient) written four ways, timed
       interleaved in this process, after checking that all four give the same outputs:
         rows          h [B, H] x W_h [H, 4H], the layout of rnnlab/cells/fused.py
         transposed    W_h^T [4H, H] x h^T [H, B], gates and carries kept as [4H, B], [H, B]
         column_blocks the recurrent matmul as two dots over column halves of W_h, concatenated
         batch_halves  two independent chains per iteration, one per half of the batch
       with the cores kept busy (CPU time over wall time) for each.
threads Where PyTorch's second core goes and XLA's does not (session 12), per size:
         chains_K      the ``rows`` loop with the batch as K independent chains per iteration
                       (K = 1, 2, 4, 8; B divisible by K): work XLA could run side by side
         torch_T       PyTorch's nn.LSTM forward (no gradient) on T threads (1, then every core)
       with the cores kept busy. Measured in session 12: XLA ran the loop body's operations
       one at a time whatever the chains (only a dot big enough for YNNPACK to split used the
       second core), while PyTorch's oneDNN LSTM runs each step's matmul and gates on every
       thread and was 1.6-1.9x faster on two threads than on one.

Every mode prints a table (ratios to the first row) and, with ``--json``, writes it with the
machine and the versions. The workers inherit the environment (run it like the other scripts,
after ``source scripts/_env.sh`` or through .venv/bin/python with rnnlab's launcher settings).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from _interleave import round_orders

from experiments._cli import XLA_CPU_DEFAULTS, XLA_CPU_FLAGS, add_xla_cpu_flags

NO_YNN = "--xla_cpu_experimental_ynn_fusion_type="  # dots leave YNNPACK for the other paths
EIGEN1 = XLA_CPU_FLAGS["xla_cpu_multi_thread_eigen"]  # Eigen's threads off (rnnlab's default)
MOF = XLA_CPU_FLAGS["xla_cpu_use_multi_output_fusion"]  # multi-output fusion (rnnlab's default)
OPTION = "--xla_backend_extra_options="  # options that XLA_FLAGS itself does not list
SMALL_LOOP = f"{OPTION}xla_cpu_small_while_loop_byte_threshold=1000000000"  # a loop: one kernel
IR_GEMM = "xla_force_enable_experimental_llvm_ir_gemm=true"  # XLA's own tiled GEMM for dots
SETTINGS = {  # name -> XLA_FLAGS; "default" is what rnnlab's launchers set
    "default": XLA_CPU_DEFAULTS,
    "no_multi_output_fusion": EIGEN1,  # rnnlab's default before session 10
    "eigen_threads": f"--xla_cpu_multi_thread_eigen=true {MOF}",
    "onednn": f"{XLA_CPU_DEFAULTS} --xla_cpu_use_onednn=true",
    "xnnpack": f"{XLA_CPU_DEFAULTS} --xla_cpu_use_xnnpack=true",
    "no_ynn_eigen1": f"{NO_YNN} {XLA_CPU_DEFAULTS}",
    "no_ynn_eigen2": f"{NO_YNN} --xla_cpu_multi_thread_eigen=true {MOF}",
    "no_ynn_onednn": f"{NO_YNN} {XLA_CPU_DEFAULTS} --xla_cpu_use_onednn=true",
    "no_ynn_xnnpack": f"{NO_YNN} {XLA_CPU_DEFAULTS} --xla_cpu_use_xnnpack=true",
    "vector512": f"{XLA_CPU_DEFAULTS} --xla_cpu_prefer_vector_width=512",
    "fast_math": f"{XLA_CPU_DEFAULTS} --xla_cpu_enable_fast_math=true",
    "xnn_graph_greedy": f"{XLA_CPU_DEFAULTS} --xla_cpu_experimental_xnn_graph_fusion_mode="
    "XNN_GRAPH_FUSION_MODE_GREEDY",
    "copy_region_analysis": f"{XLA_CPU_DEFAULTS} --xla_cpu_copy_insertion_use_region_analysis=true",
    # A loop whose body holds no custom fusion (YNNPACK's dots are one) becomes one compiled
    # function: the dot then leaves YNNPACK for XLA's own LLVM IR GEMM (single-threaded).
    "small_loop": f"{XLA_CPU_DEFAULTS} {SMALL_LOOP}",
    "small_loop_ir_gemm": f"{NO_YNN} {XLA_CPU_DEFAULTS} {SMALL_LOOP},{IR_GEMM}",
    "ir_gemm": f"{NO_YNN} {XLA_CPU_DEFAULTS} {OPTION}{IR_GEMM}",
}
COPY = "default_copy"  # a second worker with SETTINGS["default"]: the noise floor
# The default setting in a process with two CPU devices that first runs the data-parallel step
# (bench_cells.py's rnnlab_dp) a few times, then times the one-device step (session 11: a
# one-device program was often ~45% slower in a process that had run a two-device one).
AFTER_DP = "default_after_dp"
SIZES = ((32, 64, 128, 128), (64, 100, 256, 256), (32, 128, 512, 512))
LOOP_CALLS = 64  # recurrent matmuls per timed call in ``gemm``


def xla_flags(setting: str) -> str:
    """The XLA_FLAGS of a setting (``default_copy``: the default's)."""
    return SETTINGS.get(setting, SETTINGS["default"])


def _size(text: str) -> tuple[int, ...]:
    size = tuple(int(v) for v in text.split(","))
    if len(size) != 4 or min(size) < 1:
        raise argparse.ArgumentTypeError(f"want B,T,D,H (four positive integers), got {text!r}")
    return size


# --- workers: one process per XLA setting ------------------------------------------------------


def _worker(args) -> None:
    """Runs in a child process: "step" answers each stdin line with one timed call."""
    if args.worker == "gemm":
        print(json.dumps(gemm_rates(args.sizes, torch_mm=args.setting == "torch")), flush=True)
        return
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_contenders as bc

    make = bc.torch_step if args.setting == "torch" else bc.rnnlab_step
    step = make(args.cell, *args.size)
    if args.setting == AFTER_DP:
        data_parallel = bc.rnnlab_step(args.cell, *args.size, devices=2)
        for _ in range(3):
            data_parallel()
    for _ in range(3):  # compile and warm up
        step()
    print("ready", flush=True)
    for _ in sys.stdin:
        start = time.perf_counter()
        step()
        print(time.perf_counter() - start, flush=True)


def _spawn(mode: str, setting: str, args, interactive: bool) -> subprocess.Popen:
    env = dict(os.environ)
    if setting != "torch":
        env["XLA_FLAGS"] = xla_flags(setting)
    if setting == AFTER_DP:
        env["JAX_NUM_CPU_DEVICES"] = "2"
    cmd = [sys.executable, os.path.abspath(__file__), mode, "--worker", mode, "--setting", setting]
    if mode == "flags":
        cmd += ["--cell", args.cell, "--size", ",".join(map(str, args.size))]
    else:
        cmd += ["--sizes", *(",".join(map(str, s)) for s in args.sizes)]
    pipe = subprocess.PIPE
    return subprocess.Popen(
        cmd, env=env, stdin=pipe if interactive else None, stdout=pipe, text=True
    )


def _start_step_worker(name: str, args) -> subprocess.Popen | None:
    """A "flags" worker for setting ``name``, compiled and warmed up; None if it did not start
    (an XLA that does not know a flag aborts)."""
    proc = _spawn("flags", name, args, interactive=True)
    if proc.stdout.readline().strip() == "ready":
        return proc
    proc.kill()
    return None


def _timed_call(proc: subprocess.Popen) -> float:
    """One timed call of a worker's step, seconds."""
    proc.stdin.write("go\n")
    proc.stdin.flush()
    return float(proc.stdout.readline())


def _stop(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    proc.wait()


def probe_flags(args) -> list[dict]:
    """Medians of the step under each setting, one worker each, called in turn in the balanced
    order of _interleave.py."""
    names = args.settings or [*SETTINGS, COPY] + (["torch"] if args.torch else [])
    workers = {}
    for name in names:
        proc = _start_step_worker(name, args)
        if proc is not None:
            workers[name] = proc
        else:  # say so and go on with the others
            print(f"{name}: the worker did not start (XLA_FLAGS={xla_flags(name)!r})")
    if not workers:
        raise SystemExit("flags: no worker started; see the errors above")
    times = {name: [] for name in workers}
    order = list(workers)
    for names_in_turn in round_orders(order, args.rounds):  # every worker follows every other
        for name in names_in_turn:
            times[name].append(_timed_call(workers[name]))
    for proc in workers.values():
        _stop(proc)
    base = times[order[0]]
    return [
        {
            "setting": name,
            "xla_flags": xla_flags(name) if name != "torch" else None,
            "ms": round(statistics.median(t) * 1e3, 2),
            "ratio": round(statistics.median(t) / statistics.median(base), 3),
            "ratio_per_round": round(statistics.median(a / b for a, b in zip(t, base)), 3),
        }
        for name, t in times.items()
    ]


def probe_alone(args) -> list[dict]:
    """Each setting's step in a process of its own with nothing else running: one worker at a
    time, ``--rounds`` calls each, the settings in turn, ``--passes`` times over. What a user who
    trains one model gets; the interleaved modes measure each contender after another one's call.
    """
    names = args.settings or ["default", "torch"]
    medians = {name: [] for name in names}
    for _ in range(args.passes):
        for name in names:
            proc = _start_step_worker(name, args)
            if proc is None:
                raise SystemExit(f"alone: the {name} worker did not start")
            medians[name].append(statistics.median(_timed_call(proc) for _ in range(args.rounds)))
            _stop(proc)
    base = medians[names[0]]
    return [
        {
            "setting": name,
            "xla_flags": xla_flags(name) if name != "torch" else None,
            "ms": round(statistics.median(m) * 1e3, 2),
            "ms_per_pass": [round(v * 1e3, 2) for v in m],
            "ratio": round(statistics.median(m) / statistics.median(base), 3),
            "ratio_per_pass": [round(a / b, 3) for a, b in zip(m, base)],
        }
        for name, m in medians.items()
    ]


# --- gemm ----------------------------------------------------------------------------------------


def step_gemms(size) -> dict[str, tuple[int, int, int]]:
    """(M, K, N) of the LSTM step's matmuls at (B, T, D, H)."""
    B, T, D, H = size
    return {
        "projection": (T * B, D, 4 * H),  # xs W_x, all steps at once
        "weight_grad": (D, T * B, 4 * H),  # X^T dZ, after the backward scan
        "recurrent": (B, H, 4 * H),  # h W_h, once per step inside the loop
    }


def _median_seconds(fn, calls: int) -> float:
    fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _gemm_seconds(M: int, K: int, N: int, repeat: int, torch_mm: bool) -> float:
    """Median seconds of one [M, K] x [K, N] matmul, ``repeat`` of them per timed call."""
    if torch_mm:
        import torch

        a, b, out = torch.randn(M, K), torch.randn(K, N), torch.empty(M, N)

        def run():
            for _ in range(repeat):
                torch.mm(a, b, out=out)  # into one buffer, as nn.LSTM's workspace

        return _median_seconds(run, 15) / repeat
    import jax
    import jax.numpy as jnp
    from jax import lax

    b = jax.random.normal(jax.random.key(1), (K, N))
    if repeat == 1:
        a, fn = jax.random.normal(jax.random.key(0), (M, K)), jax.jit(jnp.dot)
    else:  # as the fused scan runs it: one dot per iteration of a lax.scan
        a = jax.random.normal(jax.random.key(0), (repeat, M, K))
        fn = jax.jit(lambda a, b: lax.scan(lambda _, x: (None, x @ b), None, a)[1])
    return _median_seconds(lambda: fn(a, b).block_until_ready(), 15) / repeat


def gemm_rates(sizes, torch_mm: bool = False) -> list[dict]:
    """GFLOP/s of each step GEMM, jnp.dot (or torch.mm) per shape.

    The recurrent matmul runs LOOP_CALLS times in one ``lax.scan``, as the fused scan runs it (one
    jitted call of a [B, H] x [H, 4H] dot is mostly dispatch); torch.mm is called from Python into
    one output buffer, once per matmul.
    """
    rows = []
    for size in sizes:
        for name, (M, K, N) in step_gemms(size).items():
            repeat = LOOP_CALLS if name == "recurrent" else 1
            seconds = _gemm_seconds(M, K, N, repeat, torch_mm)
            rows.append(
                {"size": list(size), "gemm": name, "shape": [M, K, N],
                 "us": round(seconds * 1e6, 1), "gflops": round(2 * M * K * N / seconds / 1e9, 1)}
            )  # fmt: skip
    return rows


def probe_gemm(args) -> list[dict]:
    rows = []
    names = args.settings or [*SETTINGS] + (["torch"] if args.torch else [])
    for name in names:
        proc = _spawn("gemm", name, args, interactive=False)
        out, _ = proc.communicate()
        if proc.returncode:
            print(f"{name}: the worker failed (exit {proc.returncode})")
            continue
        rows += [{"setting": name, **row} for row in json.loads(out)]
    return rows


# --- loop --------------------------------------------------------------------------------------


def _lstm_step(h, c, a, axis=-1):
    """One LSTM step from the pre-activations a (i f g o along ``axis``): (h', c')."""
    import jax
    import jax.numpy as jnp

    i, f, g, o = jnp.split(a, 4, axis=axis)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    return jax.nn.sigmoid(o) * jnp.tanh(c), c


def batch_chains(k: int):
    """The ``rows`` loop with the batch as ``k`` independent chains per iteration (B % k == 0):
    fn(w_h, zs, h0, c0) -> hs [T, B, H], k matmuls and k elementwise chains per iteration."""
    import jax.numpy as jnp
    from jax import lax

    def chains(w_h, zs, h0, c0):
        def body(carry, z):
            zs_k = jnp.split(z, k, axis=0)
            new = tuple(_lstm_step(h, c, zk + h @ w_h) for (h, c), zk in zip(carry, zs_k))
            return new, jnp.concatenate([h for h, _ in new], axis=0)

        init = tuple(zip(jnp.split(h0, k, axis=0), jnp.split(c0, k, axis=0)))
        return lax.scan(body, init, zs)[1]

    return chains


def loop_variants(H: int) -> dict:
    """The LSTM forward loop four ways: fn(w_h [H, 4H], zs [T, B, 4H], h0, c0) -> hs [T, B, H].

    "transposed" takes and returns the transposed layout (``transpose_io``): its inputs are laid
    out once, outside the timed call, so that the time is the loop's own.
    """
    import jax
    import jax.numpy as jnp
    from jax import lax

    def rows(w_h, zs, h0, c0):
        def body(carry, z):
            h, c = _lstm_step(*carry, z + carry[0] @ w_h)  # [B, 4H]
            return (h, c), h

        return lax.scan(body, (h0, c0), zs)[1]

    def transposed(w_h, zs_t, h0_t, c0_t):  # zs_t [T, 4H, B], h0_t c0_t [H, B]: laid out outside
        w_t = w_h.T  # [4H, H]

        def body(carry, z):  # z: [4H, B]
            h, c = _lstm_step(*carry, z + w_t @ carry[0], axis=0)  # [H, B]
            return (h, c), h

        return lax.scan(body, (h0_t, c0_t), zs_t)[1]  # [T, H, B]

    def column_blocks(w_h, zs, h0, c0):
        w_a, w_b = jnp.split(w_h, 2, axis=1)  # [H, 2H] each: two independent dots

        def body(carry, z):
            a = z + jnp.concatenate([carry[0] @ w_a, carry[0] @ w_b], axis=-1)
            h, c = _lstm_step(*carry, a)
            return (h, c), h

        return lax.scan(body, (h0, c0), zs)[1]

    fns = {"rows": rows, "transposed": transposed, "column_blocks": column_blocks}
    fns["batch_halves"] = batch_chains(2)  # two independent chains, rows [:B/2] and [B/2:]
    return {name: jax.jit(fn) for name, fn in fns.items()}


def loop_inputs(size):
    import jax

    B, T, _, H = size
    k_w, k_z, k_h = jax.random.split(jax.random.key(0), 3)
    w_h = jax.random.normal(k_w, (H, 4 * H)) / H**0.5
    zs = jax.random.normal(k_z, (T, B, 4 * H))
    h0 = jax.random.normal(k_h, (B, H)) * 0.1
    return w_h, zs, h0, h0 * 0


def transpose_io(arrays) -> list:
    """[T, B, K] <-> [T, K, B] and [B, H] <-> [H, B]: the transposed variant's layout."""
    import jax.numpy as jnp

    return [jnp.swapaxes(a, -1, -2) for a in arrays]


def _time_interleaved(fns: dict, rounds: int) -> tuple[dict, dict]:
    """Median wall seconds and cores kept busy (CPU over wall time) of each no-argument fn,
    called in turn, every fn following every other equally often (_interleave.py)."""
    times = {name: [] for name in fns}
    cpu = {name: 0.0 for name in fns}
    for order in round_orders(list(fns), rounds):
        for name in order:
            wall, proc = time.perf_counter(), time.process_time()
            fns[name]()
            times[name].append(time.perf_counter() - wall)
            cpu[name] += time.process_time() - proc
    cores = {name: cpu[name] / sum(times[name]) for name in fns}
    return {name: statistics.median(t) for name, t in times.items()}, cores


def _rows_against(size, key: str, seconds: dict, cores: dict, base: str) -> list[dict]:
    return [
        {"size": list(size), key: name, "ms": round(s * 1e3, 3),
         "ratio": round(s / seconds[base], 3), "cores": round(cores[name], 2)}
        for name, s in seconds.items()
    ]  # fmt: skip


def probe_loop(args) -> list[dict]:
    import jax
    import numpy as np

    rows = []
    for size in args.sizes:
        fns = loop_variants(size[3])
        w_h, *rest = loop_inputs(size)
        inputs = {name: (w_h, *rest) for name in fns}
        inputs["transposed"] = (w_h, *transpose_io(rest))
        want = np.asarray(fns["rows"](*inputs["rows"]))
        for name, fn in fns.items():  # the same outputs, or the timing means nothing
            got = fn(*inputs[name])
            got = transpose_io([got])[0] if name == "transposed" else got
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=name)
        calls = {
            name: (lambda fn=fn, x=inputs[name]: jax.block_until_ready(fn(*x)))
            for name, fn in fns.items()
        }
        rows += _rows_against(size, "variant", *_time_interleaved(calls, args.rounds), "rows")
    return rows


CHAINS = (1, 2, 4, 8)  # threads: the batch as this many independent chains


def _torch_lstm_forward(size, threads: int):
    """A call of PyTorch's nn.LSTM forward (no gradient) at (B, T, D, H) on ``threads``."""
    import torch

    B, T, D, H = size
    torch.manual_seed(0)
    lstm, xs = torch.nn.LSTM(D, H), torch.randn(T, B, D)

    def call():
        torch.set_num_threads(threads)
        with torch.no_grad():
            lstm(xs)

    return call


def probe_threads(args) -> list[dict]:
    """The ``rows`` loop as 1, 2, 4, 8 independent chains (each K dividing B), and PyTorch's LSTM
    forward on one thread and on every core, timed interleaved: who puts the second core to
    work. XLA's chain variants are checked against the one-chain loop first."""
    import jax
    import numpy as np

    from experiments._cli import cores

    rows = []
    for size in args.sizes:
        x = loop_inputs(size)  # w_h, zs, h0, c0
        fns = {f"chains_{k}": jax.jit(batch_chains(k)) for k in CHAINS if size[0] % k == 0}
        want = np.asarray(fns["chains_1"](*x))
        for name, fn in fns.items():
            np.testing.assert_allclose(fn(*x), want, rtol=1e-4, atol=1e-5, err_msg=name)
        calls = {name: (lambda f=fn, x=x: jax.block_until_ready(f(*x))) for name, fn in fns.items()}
        seconds, busy = _time_interleaved(calls, args.rounds)
        # PyTorch's settings one after the other, each after a pause: its OpenMP threads spin
        # for a while after a call, which would count as busy cores in whatever ran next.
        for threads in sorted({1, cores()}) if args.torch else ():
            time.sleep(1.0)
            name = f"torch_{threads}"
            s, b = _time_interleaved({name: _torch_lstm_forward(size, threads)}, args.rounds)
            seconds[name], busy[name] = s[name], b[name]
        rows += _rows_against(size, "variant", seconds, busy, "chains_1")
    if args.torch:
        import torch

        torch.set_num_threads(cores())
    return rows


# --- main ----------------------------------------------------------------------------------------


def print_rows(rows: list[dict]) -> None:
    keys = [k for k in rows[0] if k != "xla_flags"]
    print(" | ".join(keys))
    for row in rows:
        print(" | ".join(str(row[k]) for k in keys))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("flags", "alone", "gemm", "loop", "threads"))
    parser.add_argument("--cell", default="lstm", choices=("lstm", "gru", "gru_paper"))
    parser.add_argument("--size", type=_size, default=SIZES[0], help="flags, alone: B,T,D,H")
    parser.add_argument("--sizes", type=_size, nargs="+", default=SIZES, help="gemm, loop, threads")
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--torch", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--passes", type=int, default=6, help="alone: times over the settings")
    parser.add_argument(
        "--settings",
        type=lambda text: text.split(","),
        help=f"flags, gemm: these, in this order (default all): {', '.join(SETTINGS)}, "
        f"{COPY} (flags), {AFTER_DP}, torch; alone: default,torch by default",
    )
    parser.add_argument("--json", help="also write the rows, machine and versions here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--setting", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    known = [*SETTINGS, COPY, AFTER_DP, "torch"]
    for name in args.settings or []:
        if name not in known:
            parser.error(f"--settings: unknown {name!r}; known: {', '.join(known)}")
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.passes < 1:
        parser.error(f"--passes must be at least 1, got {args.passes}")
    if args.worker:  # a child of this script: its parent checked the arguments
        return args
    if args.mode == "loop" and any(size[0] % 2 for size in args.sizes):
        parser.error(f"--sizes: loop needs an even B (batch_halves splits it), got {args.sizes}")
    try:
        import torch  # noqa: F401
    except ImportError:  # the optional `bench` extra
        args.torch = False
        if "torch" in (args.settings or ()):
            parser.error("--settings torch: torch is not installed (the optional bench extra)")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        return _worker(args)
    if args.mode in ("loop", "threads"):  # in this process: the launchers' setting, before JAX
        add_xla_cpu_flags()
    modes = {
        "flags": probe_flags,
        "alone": probe_alone,
        "gemm": probe_gemm,
        "loop": probe_loop,
        "threads": probe_threads,
    }
    rows = modes[args.mode](args)
    print_rows(rows)
    if args.json:
        from bench_cells import machine, versions

        report = {"mode": args.mode, "argv": sys.argv[1:], "machine": machine()}
        report |= {"versions": versions(), "load_average": os.getloadavg(), "rows": rows}
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
