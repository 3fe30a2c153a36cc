"""Two processes on localhost (jax.distributed on CPU) train in lockstep and write one
checkpoint directory."""

import json
import re
import socket

from tests.train import helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_train_in_lockstep_and_share_one_checkpoint(tmp_path):
    port = free_port()
    procs = [
        helpers.start(
            [
                "-m",
                "experiments.long_memory",
                f"--workdir={tmp_path}",
                "--config=experiments/configs/long_memory.py:tiny",
                "--config.steps=30",
                f"--coordinator_address=localhost:{port}",
                "--num_processes=2",
                f"--process_id={i}",
            ],
            JAX_NUM_CPU_DEVICES="1",
            RNNLAB_DISTRIBUTED_TIMEOUT_S="20",
            JAX_COMPILATION_CACHE_DIR="",  # no shared cache between concurrent processes
        )
        for i in range(2)
    ]
    outs = [helpers.finish(p, timeout=240) for p in procs]
    for i, (code, out) in enumerate(outs):
        assert code == 0, f"process {i}: rc {code}\n{out[-3000:]}"
    digests = [re.findall(r"final params sha256 (\w+) \(process (\d)\)", out) for _, out in outs]
    assert [d[-1][1] for d in digests] == ["0", "1"]
    assert digests[0][-1][0] == digests[1][-1][0]  # identical params on both processes
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["params_sha256"] == digests[0][-1][0]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "20",
        "30",
    ]  # every 20, and the end
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [10, 20, 30]  # written once, by process 0
