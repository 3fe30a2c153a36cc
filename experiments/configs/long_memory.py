"""Long-memory tasks: one cell on the adding, copy or temporal-order problem.

    python -m experiments.long_memory --workdir=runs/lm --config.task=adding \
        --config.seq_len=200 --config.cell=lstm
    python -m experiments.long_memory --workdir=runs/lm_demo \
        --config=experiments/configs/long_memory.py:demo

Variants:
    ""      adding, T=100, LSTM 128, 5000 steps of batch 50: solves (eval MSE < 0.01) in
            ~2000 steps; about 15 minutes on 2 CPU cores.
    "demo"  adding, T=50, LSTM 64, lr 1e-2, 600 steps: about 1 minute on 2 busy CPU cores;
            the LSTM meets the 0.01 criterion at step 250 and ends near 3e-4 eval MSE (baseline
            0.167); experiments.reproduce also runs it with a tanh RNN.
    "tiny"  adding, T=10, LSTM 16, 60 steps: seconds; for tests (loss well under the baseline).
"""

import ml_collections


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0  # fixes init, data and every per-step draw
    c.task = "adding"  # adding | copy | temporal_order (rnnlab.data.tasks)
    c.seq_len = 100  # T: sequence length (for copy, the delay; sequences are T + 20)
    c.solved_threshold = -1.0  # the task's solved threshold; < 0 keeps the task's default
    c.cell = "lstm"  # a registered cell name or "package.module:factory"
    c.cell_options = ""  # the cell factory's options, e.g. "forget_bias=2.0, peepholes=True"
    c.hidden_size = 128  # H
    c.num_layers = 1  # stacked recurrent layers
    c.optimizer = "adam"  # sgd | momentum | nesterov | adam | adamw | rmsprop | adagrad
    c.learning_rate = 1e-3  # peak learning rate
    c.schedule = "constant"  # constant | cosine | warmup_cosine | linear
    c.warmup_steps = 0  # for warmup_cosine
    c.clip_norm = 1.0  # clip the gradient's global norm to this (0: off; Pascanu et al. 2013)
    c.clip_value = 0.0  # clip every gradient element to [-v, v] (0: off)
    c.batch_size = 50  # global batch, split over all devices
    c.steps = 5000  # total updates
    c.log_every = 100  # steps between metric fetches (host syncs) and eval
    c.eval_batch_size = 500  # fresh sequences for each eval
    c.checkpoint_every = 500  # steps between checkpoints
    c.max_to_keep = 3  # checkpoints kept
    c.on_nonfinite = "stop"  # stop | skip: what a NaN/inf loss or gradient does
    if variant == "demo":
        c.seq_len, c.hidden_size, c.learning_rate = 50, 64, 1e-2
        c.steps, c.log_every, c.checkpoint_every, c.eval_batch_size = 600, 50, 200, 256
    elif variant == "tiny":
        c.seq_len, c.hidden_size, c.learning_rate, c.batch_size = 10, 16, 1e-2, 16
        c.steps, c.log_every, c.checkpoint_every, c.eval_batch_size = 60, 10, 20, 128
    elif variant:
        raise ValueError(f"unknown variant {variant!r}; known: '', 'demo', 'tiny'")
    return c
