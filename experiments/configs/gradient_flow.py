"""Study 1: exploding and vanishing gradients (Bengio 1994; Pascanu, Mikolov & Bengio 2013).

    python -m experiments.gradient_flow --workdir=runs/gradient_flow
    python -m experiments.gradient_flow --workdir=runs/gf_demo
        --config=experiments/configs/gradient_flow.py:demo     (one command line)
    ... --config.cells="('mine=mypkg.cells:my_cell(size=3)', 'tanh=rnn()')"   # a user's cell

Variants (runtime on 2 shared CPU cores, measured where said):
    ""      7 cells x 5 radii, H = 64, T = 200, 4 seeds x 16 rows; about 3-4 minutes.
    "demo"  7 cells x 3 radii, H = 32, T = 200, 2 seeds x 8 rows; about 1-2 minutes.
    "tiny"  3 cells x 2 radii, H = 8, T = 30; seconds (the test's config).
    "paper" 7 cells x 5 radii, H = 128, T = 400, 10 seeds x 32 rows, the finer wall grid and
            the carousel at every radius; not run on CPU (estimated 20-40 minutes). Part 3 at
            the paper's values: SGD lr 0.01, L in {20, 50, 100, 150, 200}, 250,000 steps
            (5M sequences); hours on a GPU, never run here.

Part 3 (training with and without clipping; ``--config.training.enabled=False`` skips it):
    ""      temporal order and adding, L in {20, 50, 100}, 3 inits x 3 methods x 5 seeds
            (45 models per grid), 2,000 SGD steps at lr 0.1, the measured CPU default
            (CALIBRATION.md: lr 0.01 solves nothing in minutes). Estimated 20-30 minutes.
    "demo"  temporal order at L = 20 only, 600 steps; about 1.5 minutes.
    "tiny"  L = 10, one init, no clipping and clipping, 1 seed, 20 steps; seconds.

Expected: the linear RNN's fitted rate equals log(rho) to about 1e-8 (the float32 orthogonal
init, cast to float64, limits it; 1e-4 is the test's tolerance); tanh and ReLU rates lie below
log(rho) (tanh 0.4-0.5 nats below at input_std 1); LSTM and GRU decay at every radius; the
one-unit model's wall lies on b = 0.5 - w sigma(0.5) with ||grad E|| ~ (w sigma'(0.5))^50.
Part 3, "demo" (measured, temporal order L = 20, 600 steps, solved of 5): no clipping 0 for
every init; clipping: sigmoid 0, basic 2, smart 5; clipping + Omega: sigmoid 1, basic 5,
smart 5; spikes (> 10x the running median) in 9 of 15 unclipped models, none with Omega; no
clipped update above lr x threshold = 0.1.

Cell specs: "label=name(option=value, ...)", name a registered cell or a dotted path
"package.module:factory"; options are Python literals. The radius rho reaches a cell through its
``spectral_radius`` option when the factory has one, else by scaling params["w_h"] by rho (the
built-in LSTM and GRU initialise each gate block of W_h orthogonal, radius 1); a cell with
neither is measured once, at its own init.
"""

import ml_collections

CELLS = (
    "linear=rnn(activation_fn='identity')",
    "tanh=rnn(activation_fn='tanh')",
    "irnn=rnn(activation_fn='relu', recurrent_init='identity')",
    "lstm_bf0=lstm(forget_bias=0.0)",
    "lstm_bf1=lstm(forget_bias=1.0)",
    "lstm_chrono=lstm(chrono=200.0)",
    "gru=gru()",
)


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    """The gradient-flow config; ``variant`` in "", "demo", "tiny", "paper"."""
    c = ml_collections.ConfigDict()
    c.seed = 0  # fixes every draw: params, inputs, readouts
    # Part 1: lag curves at initialisation.
    c.cells = CELLS  # cell specs "label=name(option=value, ...)" (see the module docstring)
    c.radii = (0.5, 0.9, 1.0, 1.1, 1.5)  # spectral radii rho of W_h
    c.hidden_size = 64  # H
    c.input_size = 8  # D
    c.input_std = 1.0  # x_t ~ N(0, input_std^2); 1.0 saturates tanh, 0.1 barely does
    c.seq_len = 200  # T
    c.batch_size = 16  # rows per seed, each its own sequence
    c.num_seeds = 4  # independent inits (params, inputs and readout v)
    c.fit_min_lag = 1  # the first lag of the least-squares rate fit
    c.linear_tolerance = 1e-4  # |rate - log(rho)| accepted for the exact linear claim
    c.bound_tolerance = 1e-6  # rate - log(sigma_max) accepted for the tanh/relu bound
    # Part 4: the LSTM's constant error carousel.
    c.cec_cells = ("lstm_bf0", "lstm_bf1", "lstm_chrono")  # labels from cells (LSTM carries)
    c.cec_radii = (1.0,)  # radii at which the cell-state-only path is measured
    c.contrast_cell = "tanh"  # the plain RNN drawn next to the carousel
    c.cec_hidden_leaf = 0  # carry leaf (jax.tree.leaves order) of h, whose gradient is cut
    c.cec_cell_leaf = 1  # carry leaf of the cell state c ((h, c) for the built-in LSTM)
    c.cec_tolerance = 0.05  # |cell-path rate - log sigmoid(b_f)| accepted with inputs on (nats)
    # Part 2: Pascanu's one-unit wall.
    c.wall = ml_collections.ConfigDict()
    c.wall.w_range = (3.0, 8.0)  # w axis of the loss surface
    c.wall.b_range = (-5.0, -1.0)  # b axis
    c.wall.grid = 161  # points per axis
    c.wall.probe_ws = (5.0, 6.0, 7.0, 8.0)  # w values where the wall is located by bisection
    c.wall.starts = ((4.8, -2.8), (5.0, -3.2), (5.5, -3.4))  # GD starting points (w, b)
    c.wall.learning_rate = 0.5  # plain GD step size
    c.wall.num_steps = 100  # GD steps per trajectory
    c.wall.clip_norm = 1.0  # the clipping threshold of the clipped trajectories
    # Part 3: training with and without clipping (rnnlab.analysis.pascanu_training).
    c.training = t = ml_collections.ConfigDict()
    t.enabled = True  # run part 3; False runs parts 1, 2 and 4 alone
    t.tasks = ("temporal_order", "adding")  # Pascanu's forms (pascanu_training.TASKS)
    t.seq_lens = (20, 50, 100)  # lengths L; one compiled grid per task and L
    t.inits = ("sigmoid", "basic", "smart")  # pascanu_training.INITS
    t.methods = ("none", "clip", "clip_omega")  # no clipping, clip at clip_norm, clip + Omega
    t.num_seeds = 5  # paired seeds per init x method, trained together (vmap)
    t.hidden_size = 50  # H, tanh or sigmoid units
    t.batch_size = 20  # sequences per SGD step
    t.optimizer = "sgd"  # plain SGD, as the paper (Adam erases the contrast: CALIBRATION.md)
    t.learning_rate = 0.1  # measured CPU default; the paper's 0.01 learns nothing in minutes
    t.clip_norm = 1.0  # the norm-clipping threshold (paper: 1)
    t.omega_weight = 4.0  # alpha, the weight of Omega (eq. 9)
    t.steps = 2_000  # SGD steps per model
    t.chunk_steps = 50  # SGD steps per compiled loop step (metrics, checkpoints in between)
    t.checkpoint_every = 10  # chunks between checkpoints
    t.eval_batch_size = 500  # fresh sequences per logged eval (steps to solve)
    t.test_size = 10_000  # fresh sequences of the final test (multiple of 2,000 above 2,000)
    t.threshold = 0.01  # solved: test error below it
    t.adding_tolerance = 0.04  # adding: a sequence is wrong when |y - target| >= this
    t.spike_factor = 10.0  # a spike: ||dE/dtheta|| > factor x running median
    t.spike_window = 100  # steps in the running median
    t.strategy = "auto"  # rnnlab.train.sweep strategy over a group's models (auto: by backend)

    if variant == "demo":
        c.radii = (0.5, 1.0, 1.5)
        c.hidden_size = 32
        c.num_seeds = 2
        c.batch_size = 8
        t.tasks = ("temporal_order",)
        t.seq_lens = (20,)
        t.steps = 600
    elif variant == "tiny":
        c.cells = (
            "linear=rnn(activation_fn='identity')",
            "tanh=rnn(activation_fn='tanh')",
            "lstm_bf1=lstm(forget_bias=1.0)",
        )
        c.radii = (0.5, 1.5)
        c.hidden_size = 8
        c.input_size = 3
        c.seq_len = 30
        c.batch_size = 2
        c.num_seeds = 1
        c.cec_cells = ("lstm_bf1",)
        c.wall.grid = 21
        c.wall.probe_ws = (6.0,)
        c.wall.starts = ((4.8, -2.8),)
        c.wall.num_steps = 20
        t.tasks = ("temporal_order",)
        t.seq_lens = (10,)
        t.inits = ("smart",)
        t.methods = ("none", "clip")
        t.num_seeds = 1
        t.hidden_size = 8
        t.batch_size = 4
        t.steps = 20
        t.chunk_steps = 10
        t.eval_batch_size = 50
        t.test_size = 200
        t.spike_window = 10
    elif variant == "paper":
        c.hidden_size = 128
        c.seq_len = 400
        c.num_seeds = 10
        c.batch_size = 32
        c.cells = tuple(s.replace("chrono=200.0", "chrono=400.0") for s in CELLS)
        c.cec_radii = c.radii
        c.wall.grid = 401
        t.seq_lens = (20, 50, 100, 150, 200)
        t.learning_rate = 0.01  # the paper's SGD step
        t.steps = 250_000  # 5M sequences at batch 20, the paper's scale
        t.chunk_steps = 500
        t.checkpoint_every = 20
    elif variant:
        raise ValueError(f"unknown variant {variant!r}; expected '', 'demo', 'tiny' or 'paper'")
    return c
