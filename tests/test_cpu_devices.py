"""Sweep launchers ask JAX for one CPU device per core unless the user chose (experiments/_cli)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOG_LINE = "RNNLAB_CPU_DEVICES=1 turns this off"

# An entry point in miniature that asks for 2 CPU devices, as forget_bias asks for cores().
SCRIPT = f"""
import json, sys
sys.path.insert(0, {str(ROOT)!r})
from experiments import _cli

def report(config, workdir):
    import jax
    print(json.dumps({{"devices": jax.device_count()}}))

_cli.main({{"train": report}}, name="long_memory", cpu_devices=2)
"""


def _launch(tmp_path, script: str = SCRIPT, args=(), **env):
    path = tmp_path / "entry.py"
    path.write_text(script)
    script = path
    names = ("JAX_NUM_CPU_DEVICES", "XLA_FLAGS", "RNNLAB_CPU_DEVICES")
    clean = {k: v for k, v in os.environ.items() if k not in names}
    return subprocess.run(
        [sys.executable, str(script), f"--workdir={tmp_path / 'run'}", *args],
        env={**clean, "JAX_PLATFORMS": "cpu", "RNNLAB_MALLOC": "0", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _devices(proc) -> int:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])["devices"]


@pytest.mark.parametrize(
    "env, devices, logged",
    [
        ({}, 2, True),  # the entry point's choice
        ({"RNNLAB_CPU_DEVICES": "1"}, 1, True),  # the opt-out
        ({"RNNLAB_CPU_DEVICES": "3"}, 3, True),
        ({"JAX_NUM_CPU_DEVICES": "4"}, 4, False),  # the user's own choice wins
        ({"XLA_FLAGS": "--xla_force_host_platform_device_count=3"}, 3, False),
    ],
)
def test_launcher_sets_cpu_devices_unless_the_user_did(tmp_path, env, devices, logged):
    proc = _launch(tmp_path, **env)
    assert _devices(proc) == devices
    assert (LOG_LINE in proc.stderr) == logged, proc.stderr


@pytest.mark.parametrize("env, devices", [({}, 1), ({"RNNLAB_CPU_DEVICES": "2"}, 2)])
def test_rnnlab_cpu_devices_reaches_a_single_model_launcher(tmp_path, env, devices):
    """A launcher that asks for no devices (long_memory, translate) gets them from the variable."""
    proc = _launch(tmp_path, script=SCRIPT.replace(", cpu_devices=2)", ")"), **env)
    assert _devices(proc) == devices
    assert (LOG_LINE in proc.stderr) == bool(env), proc.stderr


@pytest.mark.parametrize(
    "batch, cores, devices",
    [
        (32, 2, 2),  # char_lm, caption: 16 rows per device
        (50, 2, 2),  # long_memory: 25 each
        (64, 8, 4),  # 16 each; 8 devices would leave 8
        (50, 8, 2),  # 5 devices would split 50 into 10s: too few rows
        (16, 2, 1),  # :tiny configs: 8 rows each would be slower than one device
        (7, 2, 1),  # no even split
        (32, 1, 1),
        (0, 2, 1),  # a bad value is left to the experiment's own check
        (None, 2, 1),
    ],
)
def test_data_parallel_devices_split_the_batch_over_the_cores(batch, cores, devices):
    from experiments import _cli

    assert _cli.data_parallel_devices(batch, cores) == devices


# A single-model launcher in miniature: devices from its config's batch size, to train only.
BATCH_SCRIPT = SCRIPT.replace(
    '_cli.main({"train": report}, name="long_memory", cpu_devices=2)',
    '_cli.main({"train": report, "other": report}, name="long_memory", '
    "cpu_devices=_cli.batch_devices)",
)


@pytest.mark.parametrize(
    "args, batch",
    [([], 50), (["--config.batch_size=16"], 16), (["--mode=other"], None)],
)
def test_single_model_launchers_take_one_device_per_core_the_batch_splits_over(
    tmp_path, args, batch
):
    from experiments import _cli

    assert BATCH_SCRIPT != SCRIPT
    proc = _launch(tmp_path, script=BATCH_SCRIPT, args=args)
    want = 1 if batch is None else _cli.data_parallel_devices(batch)  # this machine's cores
    assert _devices(proc) == want
    assert (LOG_LINE in proc.stderr) == (want > 1), proc.stderr


def test_a_bad_rnnlab_cpu_devices_is_a_one_line_error(tmp_path):
    proc = _launch(tmp_path, RNNLAB_CPU_DEVICES="two")
    assert proc.returncode == 2
    assert "error: RNNLAB_CPU_DEVICES='two': expected a positive integer" in proc.stderr


def test_xla_flags_are_added_once_and_settings_of_your_own_are_kept():
    from experiments import _cli

    eigen, fusion = _cli.XLA_CPU_FLAGS.values()
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    assert _cli.add_xla_cpu_flags(env) == [eigen, fusion]
    assert env["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=2 {eigen} {fusion}"
    assert env["XLA_FLAGS"].endswith(_cli.XLA_CPU_DEFAULTS)
    assert _cli.add_xla_cpu_flags(env) == []  # already there
    mine = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=true"}
    assert _cli.add_xla_cpu_flags(mine) == [fusion]
    assert mine["XLA_FLAGS"] == f"--xla_cpu_multi_thread_eigen=true {fusion}"
    empty: dict = {}
    assert _cli.add_xla_cpu_flags(empty) == [eigen, fusion]
    assert empty["XLA_FLAGS"] == _cli.XLA_CPU_DEFAULTS
    off = {"RNNLAB_XLA_FLAGS": "0", "XLA_FLAGS": "--xla_dump_to=/tmp/x"}
    assert _cli.add_xla_cpu_flags(off) == [] and off["XLA_FLAGS"] == "--xla_dump_to=/tmp/x"


FLAGS_SCRIPT = SCRIPT.replace(  # the launcher's XLA_FLAGS instead of its device count
    'print(json.dumps({"devices": jax.device_count()}))',
    'import os; print(json.dumps({"XLA_FLAGS": os.environ.get("XLA_FLAGS", "")}))',
)


@pytest.mark.parametrize("opt_out", [False, True])
def test_launcher_adds_its_xla_flags_and_logs_them(tmp_path, opt_out):
    from experiments import _cli

    env = {"RNNLAB_XLA_FLAGS": "0"} if opt_out else {}
    proc = _launch(tmp_path, script=FLAGS_SCRIPT, **env)
    assert proc.returncode == 0, proc.stderr
    flags = json.loads(proc.stdout.strip().splitlines()[-1])["XLA_FLAGS"]
    assert flags == ("" if opt_out else _cli.XLA_CPU_DEFAULTS)
    logged = "XLA_FLAGS has rnnlab's XLA:CPU settings" in proc.stderr
    assert logged != opt_out, proc.stderr


def test_a_bad_rnnlab_xla_flags_is_a_one_line_error(tmp_path):
    proc = _launch(tmp_path, script=FLAGS_SCRIPT, RNNLAB_XLA_FLAGS="off")
    assert proc.returncode == 2
    assert "error: RNNLAB_XLA_FLAGS='off': expected 0" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_env_sh_adds_the_launchers_xla_flags():
    """scripts/_env.sh (the tests' and benchmarks' environment) sets what the launchers set."""
    from experiments import _cli

    script = Path(__file__).resolve().parents[1] / "scripts" / "_env.sh"
    text = script.read_text()
    for name, flag in _cli.XLA_CPU_FLAGS.items():
        assert f"*{name}*" in text and flag in text, name
    assert "RNNLAB_XLA_FLAGS" in text


_GRAD_PROGRAM = """
import hashlib, re, jax, jax.numpy as jnp, numpy as np
from rnnlab import cells, recurrent
cell = cells.get("lstm")
params = cell.init(jax.random.key(0), 8, 16)
xs = jax.random.normal(jax.random.key(1), (4, 12, 8))
step = jax.jit(jax.grad(lambda p: jnp.mean(recurrent.unroll(cell, p, xs)[1] ** 2)))
text = step.lower(params).compile().as_text()
# operations XLA:CPU runs per iteration of the two scans (the while loops' bodies)
bodies = set(re.findall(r"body=%([\\w.-]+)", text))
skip = (" parameter(", " get-tuple-element(", " tuple(", " constant(", " bitcast(")
ops = 0
for block in text.split("\\n\\n"):
    lines = block.strip().splitlines()
    if lines and lines[0].split(" ")[0].lstrip("%") in bodies:
        ops += sum(" = " in line and not any(s in line for s in skip) for line in lines[1:])
grads = np.concatenate([np.asarray(g).ravel() for g in jax.tree.leaves(step(params))])
print(len(bodies), ops, hashlib.sha256(grads.tobytes()).hexdigest())
"""


def test_multi_output_fusion_is_read_by_xla_and_changes_no_value():
    """The backend option rnnlab sets is one this jaxlib reads (fewer operations in the loops of
    the compiled LSTM training step) and leaves the gradients bit for bit as they were."""
    from experiments import _cli

    runs = {}
    for name, flags in (
        ("without", ""),
        ("with", _cli.XLA_CPU_FLAGS["xla_cpu_use_multi_output_fusion"]),
    ):
        env = {**os.environ, "XLA_FLAGS": f"{flags} --xla_backend_optimization_level=0".strip()}
        proc = subprocess.run(
            [sys.executable, "-c", _GRAD_PROGRAM],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        loops, ops, digest = proc.stdout.split()
        runs[name] = int(loops), int(ops), digest
    assert runs["with"][0] == runs["without"][0] == 2, runs  # forward and backward scans
    assert runs["with"][1] < runs["without"][1], runs  # fewer operations per time step
    assert runs["with"][2] == runs["without"][2]  # the same gradients, bit for bit
