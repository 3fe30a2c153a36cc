"""scripts/profile_step.py reads a profiled training step back per XLA operation.

The check is a property of the fused LSTM (rnnlab/cells/fused.py) that the profile must show:
each of its two loops (forward, backward) runs ONE matmul per time step, and the recurrent
weight gradient is one GEMM after the backward loop. Autodiff of a scan (Flax's step, checked
by hand when this was written) has a second matmul per step in the backward loop, the rank-B
update of dW_h, which this test would catch.
"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
B, T, D, H = 4, 5, 3, 8


def test_profile_shows_one_matmul_per_step_in_each_loop_and_the_weight_gemms_outside(tmp_path):
    out = tmp_path / "profile.json"
    size = f"{B},{T},{D},{H}"
    cmd = [sys.executable, "scripts/profile_step.py", "--size", size, "--steps", "2"]
    proc = subprocess.run(
        [*cmd, "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert "ms per step" in proc.stdout and report["module"] == "jit_loss"

    loops = {loop["loop"]: loop for loop in report["loops"]}
    assert len(loops) == 2 and all(loop["iterations"] == T for loop in loops.values())
    dots = [op for op in report["ops"] if op["computes"].startswith("dot")]
    for name in loops:
        inside = [op for op in dots if op["where"] == name]
        assert len(inside) == 1 and inside[0]["calls_per_step"] == T, (name, inside)
    # Outside the loops: the input projection [T*B, D] x [D, 4H] and the two weight gradients,
    # dW_x [D, 4H] and dW_h [H, 4H], each a single GEMM over all T*B rows.
    top = sorted(op["computes"].split(" <- ")[0] for op in dots if op["where"] == "top")
    assert top == sorted(
        [f"dot f32[{T * B},{4 * H}]", f"dot f32[{D},{4 * H}]", f"dot f32[{H},{4 * H}]"]
    )
    assert all(op["calls_per_step"] == 1 for op in dots if op["where"] == "top")
    assert 0 < report["cores_busy"] and report["busy_ms"] > 0
