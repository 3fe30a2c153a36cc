"""A run killed with SIGKILL and restarted ends bit-identical to an uninterrupted one."""

import json
import signal

import jax
import numpy as np

from rnnlab.train import writers
from rnnlab.train.state import to_host
from tests.train import helpers


def final_params(workdir) -> dict:
    """The last checkpoint's params, read straight from orbax without a target (as numpy)."""
    import orbax.checkpoint as ocp

    mgr = ocp.CheckpointManager(workdir / "checkpoints", item_names=("state", "meta"))
    step = mgr.latest_step()
    restored = mgr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    return step, restored.state


def test_sigkill_mid_run_and_mid_save_then_resume_is_bit_identical(tmp_path):
    ref_dir, run_dir = tmp_path / "reference", tmp_path / "killed"
    reference = helpers.start(["-m", "tests.train._driver", str(ref_dir)])
    # 1) killed while the async save of step 40 is in flight; 2) killed after logging step 50,
    # past checkpoint 40, so metrics.jsonl holds a line the resumed run must drop and rewrite.
    rc, out = helpers.driver(run_dir, "save:40")
    assert rc == -signal.SIGKILL, out[-2000:]
    rc, out = helpers.driver(run_dir, "log:50")
    assert rc == -signal.SIGKILL, out[-2000:]
    assert "at step 20" in out, out[-2000:]  # the in-flight step 40 was never committed
    rc, out = helpers.driver(run_dir)
    assert rc == 0, out[-2000:]
    # Step 40 again if its save finished before the kill at 50, else step 20.
    assert "at step 40" in out or "at step 20" in out, out[-2000:]
    rc, ref_out = helpers.finish(reference)
    assert rc == 0, ref_out[-2000:]

    assert (run_dir / "metrics.jsonl").read_bytes() == (ref_dir / "metrics.jsonl").read_bytes()
    ref_step, ref_state = final_params(ref_dir)
    run_step, run_state = final_params(run_dir)
    assert ref_step == run_step == 60
    ref_leaves, run_leaves = (
        [np.asarray(x).tobytes() for x in jax.tree.leaves(to_host(s))]
        for s in (ref_state, run_state)
    )
    assert len(ref_leaves) > 10 and ref_leaves == run_leaves  # params, opt_state, key, data
    ref_results = json.loads((ref_dir / "results.json").read_text())
    run_results = json.loads((run_dir / "results.json").read_text())
    assert ref_results == run_results
    assert [r["step"] for r in writers.read_metrics(run_dir)] == [10, 20, 30, 40, 50, 60]
