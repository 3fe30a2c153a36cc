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


def test_the_eigen_flag_is_added_once_and_an_explicit_choice_is_kept():
    from experiments import _cli

    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    assert _cli.add_xla_cpu_flag(env)
    assert env["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=2 {_cli.XLA_CPU_FLAG}"
    assert not _cli.add_xla_cpu_flag(env)  # already there
    mine = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=true"}
    assert not _cli.add_xla_cpu_flag(mine) and mine["XLA_FLAGS"].endswith("=true")
    empty: dict = {}
    assert _cli.add_xla_cpu_flag(empty) and empty["XLA_FLAGS"] == _cli.XLA_CPU_FLAG
