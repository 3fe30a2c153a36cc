"""scripts/probe_xla_cpu.py times the same LSTM forward loop written four ways; the timing means
something only if the four compute the same thing, which is checked here against a Python loop
over rnnlab's own LSTM step (the vanilla cell of rnnlab/cells/lstm.py)."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import probe_xla_cpu as probe  # noqa: E402

from rnnlab import cells  # noqa: E402


def _reference(w_h, zs, h0, c0):
    """rnnlab's LSTM step, one Python call per time step, on the same projected inputs."""
    cell = cells.get("lstm")
    params = {"w_h": w_h}
    carry, hs = (h0, c0), []
    for z in zs:
        carry, h = cell.step(params, carry, z)
        hs.append(h)
    return np.stack(hs)  # [T, B, H]


@pytest.mark.parametrize("size", [(4, 5, 3, 8), (6, 3, 2, 16)])
def test_every_loop_variant_equals_rnnlabs_lstm_step(size):
    w_h, zs, h0, c0 = probe.loop_inputs(size)
    want = _reference(w_h, zs, h0, c0)
    for name, fn in probe.loop_variants(size[3]).items():
        if name == "transposed":  # takes and returns the [.., H, B] layout
            got = probe.transpose_io([fn(w_h, *probe.transpose_io([zs, h0, c0]))])[0]
        else:
            got = fn(w_h, zs, h0, c0)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("k", probe.CHAINS)
def test_batch_chains_equal_rnnlabs_lstm_step(k):
    size = (8, 4, 3, 8)  # B divisible by every K
    w_h, zs, h0, c0 = probe.loop_inputs(size)
    got = probe.batch_chains(k)(w_h, zs, h0, c0)
    np.testing.assert_allclose(got, _reference(w_h, zs, h0, c0), rtol=1e-5, atol=1e-6)


def test_threads_probe_reports_the_chains_that_divide_the_batch_and_torch_per_thread_count():
    args = probe.parse_args(["threads", "--sizes", "4,3,2,8", "--rounds", "2", "--no-torch"])
    rows = probe.probe_threads(args)
    # B = 4: K = 8 does not divide it
    assert [r["variant"] for r in rows] == ["chains_1", "chains_2", "chains_4"]
    assert rows[0]["ratio"] == 1.0 and all(r["ms"] > 0 and r["cores"] >= 0 for r in rows)


def test_step_gemms_are_the_lstm_steps_matmuls():
    B, T, D, H = 3, 5, 7, 11
    gemms = probe.step_gemms((B, T, D, H))
    assert gemms == {
        "projection": (T * B, D, 4 * H),
        "weight_grad": (D, T * B, 4 * H),
        "recurrent": (B, H, 4 * H),
    }


def test_loop_probe_reports_every_variant_against_rows():
    args = probe.parse_args(["loop", "--sizes", "4,3,2,8", "--rounds", "2"])
    rows = probe.probe_loop(args)
    assert [r["variant"] for r in rows] == ["rows", "transposed", "column_blocks", "batch_halves"]
    assert rows[0]["ratio"] == 1.0 and all(r["ms"] > 0 for r in rows)


def test_alone_runs_each_setting_in_a_process_of_its_own_pass_after_pass():
    args = probe.parse_args(
        ["alone", "--settings", "default,default_after_dp", "--size", "2,3,2,4", "--rounds", "2"]
        + ["--passes", "2"]
    )
    rows = probe.probe_alone(args)  # the second worker runs the step on 2 devices first
    assert [r["setting"] for r in rows] == ["default", "default_after_dp"]
    assert rows[0]["ratio"] == 1.0 and rows[0]["ratio_per_pass"] == [1.0, 1.0]
    assert all(len(r["ms_per_pass"]) == 2 and min(r["ms_per_pass"]) > 0 for r in rows)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["flags", "--settings", "default,fast"], "unknown 'fast'"),
        (["flags", "--size", "1,2,3"], "want B,T,D,H"),
        (["loop", "--rounds", "0"], "--rounds must be at least 1"),
        (["loop", "--sizes", "3,2,2,8"], "loop needs an even B"),
        (["alone", "--passes", "0"], "--passes must be at least 1"),
    ],
)
def test_bad_arguments_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        probe.parse_args(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
