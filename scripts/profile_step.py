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
    busy on average (1.0: one core at a time; a 2-core machine can reach 2); with ``--devices N``
    (data parallel, as bench_cells.py's rnnlab_dp) the counts are over all N devices' programs;
  - each while loop (``lax.scan``): its time per step, iterations, and the operations inside;
  - every operation: calls per step, ms per step, us per call, share of the step, where it
    runs (a loop or the top level) and what it computes;
  - with ``--timeline``: the top-level operations of the last traced step in order, with start,
    duration, device and thread, which shows what ran at the same time (and, data parallel, how
    long one device waits for the other in a collective).

The profiler adds a little time per operation (a few percent here), and more to YNNPACK's large
GEMMs, which its tracing slows (session 11: the LSTM step's [2048, 128] x [128, 512] projection,
1.6-1.7 ms jitted alone, took 2.3 ms on average under the profiler and up to 4.3 ms). Read the
operation counts, the loops and the order from here; time steps, and the parts of one, with
scripts/bench_cells.py or by jitting the part alone.
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
from collections import defaultdict
from typing import NamedTuple

from experiments._cli import add_xla_cpu_flags

DUMP_DIR = tempfile.mkdtemp(prefix="rnnlab_profile_hlo_")
atexit.register(shutil.rmtree, DUMP_DIR, ignore_errors=True)
add_xla_cpu_flags()  # the launchers' setting; before any JAX computation (see experiments/_cli.py)
os.environ["XLA_FLAGS"] += f" --xla_dump_to={DUMP_DIR} --xla_dump_hlo_as_text"

import jax  # noqa: E402
from bench_contenders import STEPS, rnnlab_step  # noqa: E402

CONTENDERS = {"rnnlab": rnnlab_step} | {k: v for k, v in STEPS.items() if k != "torch"}
CELLS = ("lstm", "gru", "gru_paper")
IGNORED = ("ThunkExecutor", "end: ")  # executor bookkeeping and zero-length end markers
STEP_MARK = "profiled_step_"  # a TraceAnnotation around each traced step

# --- the compiled HLO: what each operation computes ------------------------------------------

_NAME = re.compile(r"^\s*(?:ROOT )?%(\S+) = ")
_OP = re.compile(r"\s*([\w-]+)\((.*)$")
_COMP = re.compile(r"^(?:ENTRY )?%(\S+) \(")


class Hlo(NamedTuple):
    """What the optimized HLO says about each instruction (each thunk is named after one)."""

    describe: dict[str, str]  # a short description: the root op and shape of what it computes
    loop: dict[str, str]  # the innermost while loop whose body holds it; absent: the top level


def _shape(text: str) -> str:
    """'f32[32,512]{1,0}' -> 'f32[32,512]'."""
    return re.sub(r"\{[^}]*\}", "", text)


def _instruction(line: str) -> tuple[str, str, str, str] | None:
    """(name, shape, opcode, the rest) of an HLO instruction line, or None.

    The shape may be a tuple, "(s32[], f32[32,128]{1,0}, ...)", with spaces inside.
    """
    head = _NAME.match(line)
    if not head:
        return None
    rest = line[head.end() :]
    if rest.startswith("("):  # a tuple shape: up to its matching parenthesis
        depth = 0
        for i, ch in enumerate(rest):  # noqa: B007 (i is read after the loop)
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if depth == 0:
                break
        shape, rest = rest[: i + 1], rest[i + 1 :]
    else:
        shape, _, rest = rest.partition(" ")
        rest = " " + rest
    op = _OP.match(rest)
    return (head.group(1), _shape(shape), *op.groups()) if op else None


def parse_hlo(text: str) -> Hlo:
    """Reads a module's optimized HLO text (as ``--xla_dump_hlo_as_text`` writes it).

    A fusion is described by the root of the computation it calls (a dot also by its operand
    shapes), anything else by its opcode; both with the result shape. An instruction belongs to
    a loop when it sits in the body computation of a ``while``.
    """
    computations: dict[str, list[tuple[str, str, str, str]]] = {}
    current = None
    for line in text.splitlines():
        head = _COMP.match(line)
        if head:
            current = computations.setdefault(head.group(1), [])
            continue
        instr = _instruction(line)
        if instr and current is not None:
            current.append(instr)
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

    describe, body_of_loop = {}, {}
    for body in computations.values():
        for name, shape, op, args in body:
            if op == "fusion":
                called = re.search(r"calls=%([\w.-]+)", args)
                describe[name] = root(called.group(1)) if called else f"fusion {_shape(shape)}"
            else:
                describe[name] = f"{op} {_shape(shape)}"
            if op == "while":
                loop_body = re.search(r"body=%([\w.-]+)", args)
                if loop_body:
                    body_of_loop[loop_body.group(1)] = name
    loop = {
        name: body_of_loop[comp]
        for comp, body in computations.items()
        if comp in body_of_loop
        for name, *_ in body
    }
    return Hlo(describe, loop)


def _module_hlo(module: str) -> Hlo:
    """The parsed HLO of the dumped module ``module`` (e.g. jit_loss). Only the step's: helper
    programs reuse instruction names (``ynn_fusion``, ``while.3``) for other operations."""
    paths = glob.glob(os.path.join(DUMP_DIR, f"*.{module}.*after_optimizations.txt"))
    if not paths:
        return Hlo({}, {})
    with open(max(paths)) as f:  # the last compilation of that name
        return parse_hlo(f.read())


# --- the trace ---------------------------------------------------------------------------------


def _stats(event) -> dict:
    return {k: v for k, v in event.stats}


def _is_loop(name: str) -> bool:
    """A while thunk's own event: it only launches the body (which may run on after it ends)."""
    return re.fullmatch(r"while(\.\d+)?", name) is not None


def collect(step, steps: int, trace_dir: str):
    """Calls ``step`` ``steps`` times under the profiler.

    Returns (events, wall seconds of each step, each step's (start, end) in trace ns); events:
    (start_ns, duration_ns, thread, name, module, device) of every XLA operation but the while
    thunks (device: the ordinal of the device whose program ran it).
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
    events, windows = [], {}
    for plane in data.planes:
        for line in plane.lines:
            for e in line.events:
                if e.name.startswith(STEP_MARK):
                    windows[int(e.name[len(STEP_MARK) :])] = (e.start_ns, e.end_ns)
                if e.name.startswith(IGNORED) or _is_loop(e.name):
                    continue
                stats = _stats(e)
                if stats.get("hlo_module") is not None:
                    device = stats.get("device_ordinal", 0)
                    events.append(
                        (e.start_ns, e.duration_ns, line.name, e.name, stats["hlo_module"], device)
                    )
    return sorted(events), walls, [windows[i] for i in sorted(windows)]


def step_module(events) -> str:
    """The module that took the most time: the step (others are tiny helper programs)."""
    modules = defaultdict(int)
    for _, dur, _, _, module, _ in events:
        modules[module] += dur
    return max(modules, key=modules.get)


def summarize(events, walls, windows, hlo: Hlo, module: str) -> dict:
    """Per-operation and per-loop totals, per step, of the step's ``module``."""
    steps, wall = len(walls), statistics.median(walls)
    events = [e for e in events if e[4] == module]
    devices = len({e[5] for e in events})  # data parallel: each device runs the module

    ops: dict[str, dict] = {}
    for _, dur, _, name, _, _ in events:
        op = ops.setdefault(name, {"calls": 0, "ns": 0})
        op["calls"] += 1
        op["ns"] += dur
    rows = [
        {
            "op": name,
            "where": hlo.loop.get(name, "top"),
            "calls_per_step": op["calls"] / steps,
            "ms_per_step": op["ns"] / steps / 1e6,
            "us_per_call": op["ns"] / op["calls"] / 1e3,
            "share": op["ns"] / steps / 1e9 / wall,
            "computes": hlo.describe.get(name, ""),
        }
        for name, op in sorted(ops.items(), key=lambda kv: -kv[1]["ns"])
    ]
    loops = []
    for name in sorted({r["where"] for r in rows} - {"top"}):
        inside = [r for r in rows if r["where"] == name]
        in_loop = {r["op"] for r in inside}
        iterations = max(r["calls_per_step"] for r in inside) / devices  # per device
        loops.append(
            {
                "loop": name,
                "span_ms_per_step": _span([e for e in events if e[3] in in_loop], windows),
                "busy_ms_per_step": sum(r["ms_per_step"] for r in inside),
                "iterations": iterations,
                "ops_per_iteration": sum(r["calls_per_step"] for r in inside)
                / (iterations * devices),
                "matmul_ms_per_step": sum(r["ms_per_step"] for r in inside if _is_matmul(r)),
            }
        )
    loops.sort(key=lambda loop: -loop["span_ms_per_step"])
    busy = sum(r["ms_per_step"] for r in rows)
    return {
        "module": module,
        "devices": devices,
        "wall_ms": wall * 1e3,
        "busy_ms": busy,
        "cores_busy": busy / 1e3 / wall,
        "top_level_ms": sum(r["ms_per_step"] for r in rows if r["where"] == "top"),
        "loops": loops,
        "ops": rows,
    }


def _span(events, windows) -> float:
    """Mean over the steps (and devices) of the time from a device's first event to its last
    one's end, ms."""
    spans = []
    for lo, hi in windows:
        for device in {e[5] for e in events}:
            kept = [e for e in events if lo <= e[0] <= hi and e[5] == device]
            if kept:
                spans.append((max(e[0] + e[1] for e in kept) - min(e[0] for e in kept)) / 1e6)
    return statistics.mean(spans) if spans else 0.0


def _is_matmul(row) -> bool:
    return row["computes"].startswith("dot")


def timeline(events, module: str, window, hlo: Hlo) -> list[tuple[float, float, int, str, str]]:
    """(start ms, duration ms, device, thread, op) of one step's top-level operations; each
    device's run of a loop as one line, from its body's first operation to its last."""
    events = [e for e in events if e[4] == module and window[0] <= e[0] <= window[1]]
    lines = [
        (s, d, dev, thread, name) for s, d, thread, name, _, dev in events if name not in hlo.loop
    ]
    for loop, device in sorted({(hlo.loop[e[3]], e[5]) for e in events if e[3] in hlo.loop}):
        body = [e for e in events if hlo.loop.get(e[3]) == loop and e[5] == device]
        start = min(e[0] for e in body)
        end = max(e[0] + e[1] for e in body)
        lines.append((start, end - start, device, body[0][2], f"{loop} (loop)"))
    lines.sort()
    t0 = lines[0][0] if lines else 0
    return [((s - t0) / 1e6, d / 1e6, dev, thread, name) for s, d, dev, thread, name in lines]


# --- output ------------------------------------------------------------------------------------


def print_report(title: str, report: dict, top: int):
    print(
        f"{title}: {report['wall_ms']:.2f} ms per step (median of the traced steps), "
        f"XLA module {report['module']}"
    )
    print(
        f"operations ({report['devices']} device(s), all counted): {report['busy_ms']:.2f} ms "
        f"per step in all; cores busy on average "
        f"{report['cores_busy']:.2f}; at the top level (outside loops) "
        f"{report['top_level_ms']:.2f} ms"
    )
    print("(the profiler slows YNNPACK's large GEMMs: time them without it; see the docstring)")
    per_device = " per device" if report["devices"] > 1 else ""
    for loop in report["loops"]:
        print(
            f"  {loop['loop']:<12} {loop['span_ms_per_step']:8.2f} ms per step (a device's first "
            f"to last operation), {loop['iterations']:.0f} iterations{per_device} of "
            f"{loop['ops_per_iteration']:.1f} operations; busy {loop['busy_ms_per_step']:.2f} ms, "
            f"of which matmuls {loop['matmul_ms_per_step']:.2f} ms"
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
    parser.add_argument(
        "--devices",
        type=int,
        default=1,
        help="rnnlab and flax: data parallel over this many CPU devices (the batch split)",
    )
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
    if args.devices < 1:
        parser.error(f"--devices: expected a positive integer, got {args.devices}")
    args.size = size
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    make = CONTENDERS[args.contender]
    if make is None:  # an optional peer that is not installed
        sys.exit(f"--contender {args.contender}: not installed (the `bench` extra)")
    if args.devices > 1:
        try:  # before the backend starts
            jax.config.update("jax_num_cpu_devices", args.devices)
        except RuntimeError:  # it started: the devices it has are what there is
            pass
        if jax.device_count() < args.devices:
            sys.exit(
                f"--devices {args.devices}: only {jax.device_count()} devices (set "
                f"JAX_NUM_CPU_DEVICES={args.devices})"
            )
    kwargs = {"devices": args.devices} if args.devices > 1 else {}
    try:
        step = make(args.cell, *args.size, **kwargs)
    except (TypeError, ValueError) as e:  # a contender without devices, or B not divisible
        sys.exit(f"--devices {args.devices}: {e}")
    for _ in range(3):  # compile and warm up
        step()
    with tempfile.TemporaryDirectory() as trace_dir:
        events, walls, windows = collect(step, args.steps, trace_dir)
    if not events or len(windows) != args.steps:
        sys.exit("the profile holds no XLA operations of the traced steps")
    module = step_module(events)
    hlo = _module_hlo(module)
    report = summarize(events, walls, windows, hlo, module)
    report |= {
        "contender": args.contender,
        "cell": args.cell,
        "size": list(args.size),
        "steps": args.steps,
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }
    print_report(f"{args.contender} {args.cell} B,T,D,H={args.size}", report, args.top)
    if args.timeline:
        report["timeline"] = timeline(events, module, windows[-1], hlo)
        print("last step, top level (start ms, duration ms, device, thread, op):")
        for start, dur, device, thread, name in report["timeline"]:
            what = hlo.describe.get(name, "")
            print(f"  {start:8.3f} +{dur:8.3f}  {device:>2} {thread[-6:]:<6} {name}  {what}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return report


if __name__ == "__main__":
    main()
