"""Run with 2 CPU devices: 120 data-parallel LSTM steps through loop.train, no host sync between
logs. Without the loop's one-step-in-flight rule on multi-device CPU meshes this aborted in an
all-reduce rendezvous ("may be stuck", then a 40 s termination) before the first log."""

import sys
import tempfile

import jax

from rnnlab import cells
from rnnlab.data import tasks
from rnnlab.models import sequence
from rnnlab.train import loop, parallel, state, step

STEPS = 120


def main() -> None:
    assert jax.device_count() == 2, jax.devices()
    mesh = parallel.make_mesh()
    task = tasks.get("adding")
    k_init, k_train, k_data = jax.random.split(jax.random.key(0), 3)
    source = tasks.source(task, k_data, 50, 50)  # long_memory's demo: batch 50, T = 50, H = 64
    model = sequence.make(cells.get("lstm"), input_size=2, hidden_size=64, output_size=1)

    def loss_fn(params, batch, key):
        return task.loss(model.apply(params, batch["inputs"]), batch), {}

    tx = step.optimizer("adam", 1e-2)
    train_step = step.make_step(
        loss_fn, tx, source.next, clip_norm=1.0, grad_fn=parallel.data_parallel_grad(loss_fn, mesh)
    )
    with tempfile.TemporaryDirectory() as workdir:
        final = loop.train(
            workdir=workdir,
            init_state=lambda: state.create(model.init(k_init), tx, k_train, source.init()),
            train_step=train_step,
            steps=STEPS,
            log_every=STEPS,  # no host sync in between: every step may be dispatched ahead
            checkpoint_every=STEPS,
            config={"test": "many_in_flight"},
            mesh=mesh,
            progress=False,
        )
    print(f"done {int(final.step)}")


if __name__ == "__main__":
    main()
    sys.exit(0)
