"""Data parallelism: the same training on 1 and on 8 CPU devices agrees to float32 tolerance.

Devices are fixed per process, so the 8-device run is a subprocess. It compares gradients as
well as params: Adam hides a constant gradient factor (the shard_map check_vma trap gives 8x).
"""

import json

import pytest

from rnnlab.train import parallel
from tests.train import helpers


def test_eight_devices_match_one_device():
    proc = helpers.start(
        ["-m", "tests.train._parallel_check"],
        XLA_FLAGS="--xla_force_host_platform_device_count=8",
    )
    code, out = helpers.finish(proc, timeout=180)
    assert code == 0, out[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert result["grad_rel"] < 1e-5, result  # 8x would give 7.0
    assert result["loss_diff"] < 1e-6, result
    assert result["steps"] == [5, 5]
    assert result["param_diff"] < 1e-5 * max(1.0, result["param_scale"]), result
    assert result["train_loss"][0] == pytest.approx(result["train_loss"][1], rel=1e-5)
    # sharded_aux: per-example rows back in batch order, not averaged; a scalar leaf whole.
    assert result["rows_shape"] == [[16], [16]], result
    assert result["rows_rel"] < 1e-5 and result["mean_row_rel"] < 1e-5, result
    assert result["flag_loss_rel"] < 1e-6 and result["flag_grad_rel"] < 1e-5, result
    # weight="tokens": a per-token mean of unequal sequences equals the one-device mean; the
    # plain average of the shards' means does not.
    assert result["weighted_loss_rel"] < 1e-6 and result["weighted_grad_rel"] < 1e-5, result
    assert result["local_loss_rel"] < 1e-6 and result["local_grad_rel"] < 1e-5, result
    assert len(set(result["weighted_tokens"])) == 1, result
    assert result["plain_loss_rel"] > 1e-3 and result["plain_grad_rel"] > 1e-3, result
    # shard_batch: evaluation with replicated params runs 2 of the 16 rows per device, not 16.
    assert result["shard_rows"] == {"whole": [16], "split": [2]}, result
    assert result["shard_rel"] < 1e-5, result


def test_batch_size_must_split_over_the_devices():
    mesh = parallel.make_mesh()
    parallel.check_batch_size(4 * mesh.devices.size, mesh)
    if mesh.devices.size > 1:
        with pytest.raises(ValueError, match="not divisible"):
            parallel.check_batch_size(mesh.devices.size + 1, mesh)


def test_many_steps_in_flight_on_two_cpu_devices_do_not_deadlock():
    proc = helpers.start(["-m", "tests.train._many_in_flight"], JAX_NUM_CPU_DEVICES="2")
    code, out = helpers.finish(proc, timeout=240)
    assert code == 0 and "may be stuck" not in out, out[-3000:]
    assert out.strip().splitlines()[-1] == "done 120"
