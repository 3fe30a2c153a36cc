"""scripts/bench_contenders.py picks its peers by backend and cell: JAX's cuDNN LSTM only where
JAX has a GPU (asked for on the CPU, it fails with a clear message), and each peer only for the
cells it has a layer for."""

import sys
from pathlib import Path

import jax
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import bench_contenders as bc  # noqa: E402

pytestmark = pytest.mark.skipif(jax.default_backend() != "cpu", reason="checks the CPU choices")


def test_cudnn_is_a_peer_only_on_a_gpu():
    assert "cudnn" not in bc.usable_peers()
    assert "flax" in bc.usable_peers()
    assert bc.usable_peers(["cudnn", "flax"]) == ["cudnn", "flax"]  # as asked
    with pytest.raises(RuntimeError, match="cudnn needs JAX on a GPU"):
        bc.cudnn_step("lstm", 2, 3, 4, 5)
    if bc.torch is not None:
        assert bc.torch_device() == "cpu"


@pytest.mark.parametrize(
    "peer,cell,expected",
    [
        ("cudnn", "lstm", True),
        ("cudnn", bc.ENCODER, True),
        ("cudnn", "gru", False),  # jax.experimental.rnn has no GRU
        ("cudnn", "gru_paper", False),
        ("flax", "gru", True),
        ("flax", bc.ENCODER, True),
        ("torch", bc.ENCODER, True),
        ("equinox", bc.ENCODER, False),  # no padded bidirectional stack of its own
        ("keras", "gru", True),
    ],
)
def test_each_peer_runs_the_cells_it_has(peer, cell, expected):
    assert bc.runs(peer, cell) is expected
