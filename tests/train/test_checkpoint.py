"""Checkpoints: exact round trip, config mismatch names the fields, damage falls back."""

import logging

import jax
import pytest

from rnnlab.train import checkpoint, loop, parallel
from rnnlab.train.state import checksum
from tests.train import toy

CONFIG = {"cell": "lstm", "hidden_size": 8, "steps": 10, "task": "adding"}


def saved_states(tmp_path, steps=(1, 2, 3)):
    init_state, train_step = toy.setup()
    state, states = jax.jit(init_state)(), {}
    ckpt = checkpoint.Checkpointer(tmp_path / "ckpt", max_to_keep=5)
    for s in range(1, max(steps) + 1):
        state, _ = jax.jit(train_step)(state)
        if s in steps:
            ckpt.save(s, state, CONFIG)
            states[s] = state
    ckpt.close()
    abstract = loop.abstract_state(init_state, parallel.replicated(parallel.make_mesh()))
    return states, abstract


def restore(tmp_path, abstract, config=CONFIG, resumable=("steps",)):
    ckpt = checkpoint.Checkpointer(tmp_path / "ckpt", max_to_keep=5)
    try:
        return ckpt.restore(abstract, config, resumable)
    finally:
        ckpt.close()


def test_restore_returns_the_latest_state_exactly_with_typed_keys(tmp_path):
    states, abstract = saved_states(tmp_path)
    restored = restore(tmp_path, abstract, dict(CONFIG, steps=99))  # steps may change
    assert restored.step == 3
    assert checksum(restored.state) == checksum(states[3])
    assert jax.dtypes.issubdtype(restored.state.key.dtype, jax.dtypes.prng_key)
    assert type(restored.state.opt_state) is type(states[3].opt_state)  # not a list


def test_config_mismatch_names_every_differing_field(tmp_path):
    _, abstract = saved_states(tmp_path, steps=(1,))
    changed = dict(CONFIG, cell="gru", hidden_size=16, steps=50)
    with pytest.raises(checkpoint.ConfigMismatchError) as e:
        restore(tmp_path, abstract, changed)
    assert "cell: 'lstm' -> 'gru'" in str(e.value) and "hidden_size: 8 -> 16" in str(e.value)
    assert "steps" not in str(e.value).split("differing fields:")[1].split("(")[0]


def flip_bytes(step_dir):
    """Flips a byte in every data file of the state item: orbax restores that silently."""
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and "/d/" in str(p)]
    assert files
    for f in files:
        data = bytearray(f.read_bytes())
        data[len(data) // 2] ^= 0xFF
        f.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flip", "truncate", "no_manifest", "no_meta"])
def test_damaged_latest_checkpoint_falls_back_to_the_previous_with_a_warning(
    tmp_path, caplog, damage
):
    states, abstract = saved_states(tmp_path)
    step_dir = tmp_path / "ckpt" / "3"
    if damage == "flip":
        flip_bytes(step_dir)
    elif damage == "truncate":
        for f in (step_dir / "state").rglob("*"):
            if f.is_file() and "/d/" in str(f):
                f.write_bytes(f.read_bytes()[:10])
    elif damage == "no_manifest":
        (step_dir / "state" / "manifest.ocdbt").unlink()
    else:
        for f in (step_dir / "meta").rglob("*"):
            if f.is_file():
                f.unlink()
    with caplog.at_level(logging.WARNING):
        restored = restore(tmp_path, abstract)
    assert restored.step == 2
    assert checksum(restored.state) == checksum(states[2])
    assert any("checkpoint 3 is damaged" in r.getMessage() for r in caplog.records)


def test_all_checkpoints_damaged_is_an_error_not_a_fresh_start(tmp_path):
    _, abstract = saved_states(tmp_path, steps=(1, 2))
    for s in (1, 2):
        flip_bytes(tmp_path / "ckpt" / str(s))
    with pytest.raises(checkpoint.CheckpointError, match=r"holds checkpoints \[1, 2\]"):
        restore(tmp_path, abstract)


def test_empty_directory_restores_nothing(tmp_path):
    _, abstract = saved_states(tmp_path / "other", steps=(1,))
    assert restore(tmp_path, abstract) is None
