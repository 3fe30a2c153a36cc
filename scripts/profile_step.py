"""Where a training step's time goes: every XLA operation of one compiled step, from a profile.

    .venv/bin/python scripts/profile_step.py                         # rnnlab lstm, 32,64,128,128
    .venv/bin/python scripts/profile_step.py --cell gru --size 32,128,512,512
    .venv/bin/python scripts/profile_step.py --contender flax --timeline
    .venv/bin/python scripts/profile_step.py --json profile.json

The step is scripts/bench_cells.py's (forward + backward w.r.t. the params of mean(ys^2), built
by bench_contenders.py), for any JAX contender: rnnlab, flax, equinox, keras. The script traces
``--steps`` calls with ``jax.profiler`` and reads the trace back (``jax.profiler.ProfileData``).
XLA:CPU records one event per executed operation (a "thunk": a fusion, a matmul, a copy, a while
loop) with its name in the compiled HLO, which the script also dumps (``--xla_dump_to``, a
temporary directory) to say what each one computes: the fused computation's root operation and
its shape, e.g. ``dot f32[32,512] <- f32[32,128] f32[128,512]``.

It prints
  - the step's wall time, the summed time of its operations and their ratio: the cores kept
    busy on average (1.0: one core at a time; a 2-core machine can reach 2);
  - each while loop (``lax.scan``): its time per step, iterations, and the operations inside;
  - every operation: calls per step, ms per step, us per call, share of the step, where it
    runs (a loop or the top level) and what it computes;
  - with ``--timeline``: the top-level operations of the last traced step in order, with start,
    duration and thread, which shows what ran at the same time.

The profiler adds a little time per operation (a few percent here); compare steps with
scripts/bench_cells.py, and use this for where the time goes.
"""

from __future__ import annotations

import argparse
import atexit
import glob
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict

from experiments._cli import add_xla_cpu_flag

DUMP_DIR = tempfile.mkdtemp(prefix="rnnlab_profile_hlo_")
atexit.register(shutil.rmtree, DUMP_DIR, ignore_errors=True)
add_xla_cpu_flag()  # the launchers' setting; before any JAX computation (see experiments/_cli.py)
os.environ["XLA_FLAGS"] += f" --xla_dump_to={DUMP_DIR} --xla_dump_hlo_as_text"

import jax  # noqa: E402
from bench_contenders import STEPS, rnnlab_step  # noqa: E402

CONTENDERS = {"rnnlab": rnnlab_step} | {k: v for k, v in STEPS.items() if k != "torch"}
CELLS = ("lstm", "gru", "gru_paper")
IGNORED = ("ThunkExecutor", "end: ")  # executor bookkeeping and zero-length end markers
STEP_MARK = "profiled_step_"  # a TraceAnnotation around each traced step

# --- the compiled HLO: what each operation computes ------------------------------------------

_INSTR = re.compile(r"^\s*(?:ROOT )?%(\S+) = (\S+?)(?:\{[^}]*\})? ([\w-]+)\((.*)$")
_COMP = re.compile(r"^(?:ENTRY )?%(\S+) \(")


def _shape(text: str) -> str:
    """'f32[32,512]{1,0}' -> 'f32[32,512]'."""
    return re.sub(r"\{[^}]*\}", "", text)


def parse_hlo(text: str) -> dict[str, str]:
    """{instruction name: a short description} for a module's optimized HLO text.

    A fusion is described by the root of the computation it calls (a dot also by its operand
    shapes), anything else by its opcode; both with the result shape.
    """
    computations: dict[str, list[tuple[str, str, str, str]]] = {}
    current = None
    for line in text.splitlines():
        head = _COMP.match(line)
        if head:
            current = computations.setdefault(head.group(1), [])
            continue
        m = _INSTR.match(line)
        if m and current is not None:
            current.append(m.groups())
    shapes = {name: _shape(shape) for body in computations.values() for name, shape, _, _ in body}

    def root(comp: str) -> str:
        body = computations.get(comp, [])
        if not body:
            return "?"
        name, shape, op, args = body[-1]  # the ROOT is printed last
        if op == "dot":
            operands = re.findall(r"%([\w.-]+)", args.split(")")[0])
            return f"dot {_shape(shape)} <- " + " ".join(shapes.get(a, "?") for a in operands)
        return f"{op} {_shape(shape)}"

    described = {}
    for body in computations.values():
        for name, shape, op, args in body:
            if op == "fusion":
                called = re.search(r"calls=%([\w.-]+)", args)
                described[name] = root(called.group(1)) if called else f"fusion {_shape(shape)}"
            else:
                described[name] = f"{op} {_shape(shape)}"
    return described


def _step_module_hlo(module: str) -> dict[str, str]:
    """The description of every instruction of the dumped module ``module`` (e.g. jit_loss)."""
    described: dict[str, str] = {}
    for path in glob.glob(os.path.join(DUMP_DIR, f"*.{module}.*after_optimizations.txt")):
        with open(path) as f:
            described |= parse_hlo(f.read())
    return described


# --- the trace ---------------------------------------------------------------------------------


def _stats(event) -> dict:
    return {k: v for k, v in event.stats}


def collect(step, steps: int, trace_dir: str):
    """Calls ``step`` ``steps`` times under the profiler.

    Returns (events, wall seconds per step (median), the last step's (start, end) in trace ns);
    events: (start_ns, duration_ns, thread, name, module) of every XLA operation.
    """
    walls = []
    jax.profiler.start_trace(trace_dir)
    for i in range(steps):
        start = time.perf_counter()
        with jax.profiler.TraceAnnotation(f"{STEP_MARK}{i}"):
            step()
        walls.append(time.perf_counter() - start)
    jax.profiler.stop_trace()
    path = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)[0]
    data = jax.profiler.ProfileData.from_file(path)
    events, last = [], None
    for plane in data.planes:
        for line in plane.lines:
            for e in line.events:
                if e.name == f"{STEP_MARK}{steps - 1}":
                    last = (e.start_ns, e.start_ns + e.duration_ns)
                if e.name.startswith(IGNORED):
                    continue
                module = _stats(e).get("hlo_module")
                if module is not None:
                    events.append((e.start_ns, e.duration_ns, line.name, e.name, module))
    return sorted(events), statistics.median(walls), last


def summarize(events, wall: float, steps: int, describe: dict[str, str]) -> dict:
    """Per-operation and per-loop totals, per step, of the step's module."""
    modules = defaultdict(int)
    for _, dur, _, _, module in events:
        modules[module] += dur
    module = max(modules, key=modules.get)  # the step; others are tiny helper programs
    events = [e for e in events if e[4] == module]
    loops = [e for e in events if _is_loop(e[3])]
    leaves = [e for e in events if not _is_loop(e[3])]

    def loop_of(event) -> str | None:
        start, dur = event[0], event[1]
        for l_start, l_dur, _, name, _ in loops:
            if l_start <= start and start + dur <= l_start + l_dur:
                return name
        return None

    ops: dict[str, dict] = {}
    for event in leaves:  # where: the loop that holds most of the op's calls (threads race)
        op = ops.setdefault(event[3], {"calls": 0, "ns": 0, "where": Counter()})
        op["calls"] += 1
        op["ns"] += event[1]
        op["where"][loop_of(event) or "top"] += 1
    for op in ops.values():
        op["where"] = op["where"].most_common(1)[0][0]
    per_loop = defaultdict(lambda: {"calls": 0, "ns": 0})
    for _, dur, _, name, _ in loops:
        per_loop[name]["calls"] += 1
        per_loop[name]["ns"] += dur
    busy_ns = sum(e[1] for e in leaves)
    rows = []
    for name, op in sorted(ops.items(), key=lambda kv: -kv[1]["ns"]):
        rows.append(
            {
                "op": name,
                "where": op["where"],
                "calls_per_step": op["calls"] / steps,
                "ms_per_step": op["ns"] / steps / 1e6,
                "us_per_call": op["ns"] / op["calls"] / 1e3,
                "share": op["ns"] / steps / 1e9 / wall,
                "computes": describe.get(name, ""),
            }
        )
    loop_rows = []
    for name, loop in sorted(per_loop.items(), key=lambda kv: -kv[1]["ns"]):
        inside = [r for r in rows if r["where"] == name]
        iterations = max((r["calls_per_step"] for r in inside), default=0.0)
        loop_rows.append(
            {
                "loop": name,
                "ms_per_step": loop["ns"] / steps / 1e6,
                "iterations": iterations,
                "ops_per_iteration": sum(r["calls_per_step"] for r in inside) / max(iterations, 1),
                "matmul_ms_per_step": sum(r["ms_per_step"] for r in inside if _is_matmul(r)),
            }
        )
    return {
        "module": module,
        "wall_ms": wall * 1e3,
        "busy_ms": busy_ns / steps / 1e6,
        "cores_busy": busy_ns / steps / 1e9 / wall,
        "top_level_ms": sum(r["ms_per_step"] for r in rows if r["where"] == "top"),
        "loops": loop_rows,
        "ops": rows,
    }


def _is_matmul(row) -> bool:
    return row["computes"].startswith(("dot", "custom-call")) or "dot" in row["op"]


def timeline(events, module: str, window) -> list[tuple[float, float, str, str]]:
    """(start ms, duration ms, thread, op) of the top-level operations within ``window``."""
    events = [e for e in events if e[4] == module and window[0] <= e[0] <= window[1]]
    loops = [e for e in events if _is_loop(e[3])]

    def in_a_loop(e) -> bool:
        return any(s <= e[0] and e[0] + e[1] <= s + d for s, d, *_ in loops if s != e[0])

    top = [e for e in events if _is_loop(e[3]) or not in_a_loop(e)]
    t0 = top[0][0] if top else 0
    return [((s - t0) / 1e6, d / 1e6, thread, name) for s, d, thread, name, _ in top]


def _is_loop(name: str) -> bool:
    return re.fullmatch(r"while(\.\d+)?", name) is not None


# --- output ------------------------------------------------------------------------------------


def print_report(title: str, report: dict, top: int):
    print(
        f"{title}: {report['wall_ms']:.2f} ms per step (median of the traced steps), "
        f"XLA module {report['module']}"
    )
    print(
        f"operations: {report['busy_ms']:.2f} ms per step in all; cores busy on average "
        f"{report['cores_busy']:.2f}; at the top level (outside loops) "
        f"{report['top_level_ms']:.2f} ms"
    )
    for loop in report["loops"]:
        print(
            f"  {loop['loop']:<12} {loop['ms_per_step']:8.2f} ms per step, "
            f"{loop['iterations']:.0f} iterations of {loop['ops_per_iteration']:.1f} operations"
            f"; matmuls {loop['matmul_ms_per_step']:.2f} ms"
        )
    print(f"{'op':<40} {'where':<10} {'calls':>7} {'ms':>8} {'us/call':>9} {'share':>6}  computes")
    for r in report["ops"][:top]:
        print(
            f"{r['op'][:40]:<40} {r['where'][:10]:<10} {r['calls_per_step']:7.1f} "
            f"{r['ms_per_step']:8.3f} {r['us_per_call']:9.1f} {r['share']:6.1%}  {r['computes']}"
        )
    if len(report["ops"]) > top:
        rest = report["ops"][top:]
        print(f"... {len(rest)} more operations, {sum(r['ms_per_step'] for r in rest):.3f} ms")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cell", choices=CELLS, default="lstm")
    parser.add_argument("--size", default="32,64,128,128", help="B,T,D,H")
    parser.add_argument("--contender", choices=tuple(CONTENDERS), default="rnnlab")
    parser.add_argument("--steps", type=int, default=10, help="traced steps (after 3 warm-ups)")
    parser.add_argument("--top", type=int, default=25, help="operations to print")
    parser.add_argument("--timeline", action="store_true", help="print the last step's order")
    parser.add_argument("--json", help="write the report here")
    args = parser.parse_args(argv)
    try:
        size = tuple(int(v) for v in args.size.split(","))
    except ValueError:
        size = ()
    if len(size) != 4 or min(size) < 1:
        parser.error(f"--size: expected four positive integers B,T,D,H, got {args.size!r}")
    if args.steps < 1:
        parser.error(f"--steps: expected a positive integer, got {args.steps}")
    args.size = size
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    make = CONTENDERS[args.contender]
    if make is None:  # an optional peer that is not installed
        sys.exit(f"--contender {args.contender}: not installed (the `bench` extra)")
    step = make(args.cell, *args.size)
    for _ in range(3):  # compile and warm up
        step()
    with tempfile.TemporaryDirectory() as trace_dir:
        events, wall, last = collect(step, args.steps, trace_dir)
    modules = {e[4] for e in events}
    describe = {}
    for module in modules:
        describe |= _step_module_hlo(module)
    report = summarize(events, wall, args.steps, describe)
    report |= {
        "contender": args.contender,
        "cell": args.cell,
        "size": list(args.size),
        "steps": args.steps,
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }
    print_report(f"{args.contender} {args.cell} B,T,D,H={args.size}", report, args.top)
    if args.timeline:
        report["timeline"] = timeline(events, report["module"], last)
        print("last step, top level (start ms, duration ms, thread, op):")
        for start, dur, thread, name in report["timeline"]:
            print(f"  {start:8.3f} +{dur:8.3f}  {thread[-6:]:<6} {name}  {describe.get(name, '')}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    main()
