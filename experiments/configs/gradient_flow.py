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
            the carousel at every radius; not run on CPU (estimated 20-40 minutes).

Expected: the linear RNN's fitted rate equals log(rho) to about 1e-8 (the float32 orthogonal
init, cast to float64, limits it; 1e-4 is the test's tolerance); tanh and ReLU rates lie below
log(rho) (tanh 0.4-0.5 nats below at input_std 1); LSTM and GRU decay at every radius; the
one-unit model's wall lies on b = 0.5 - w sigma(0.5) with ||grad E|| ~ (w sigma'(0.5))^50.

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

    if variant == "demo":
        c.radii = (0.5, 1.0, 1.5)
        c.hidden_size = 32
        c.num_seeds = 2
        c.batch_size = 8
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
    elif variant == "paper":
        c.hidden_size = 128
        c.seq_len = 400
        c.num_seeds = 10
        c.batch_size = 32
        c.cells = tuple(s.replace("chrono=200.0", "chrono=400.0") for s in CELLS)
        c.cec_radii = c.radii
        c.wall.grid = 401
    elif variant:
        raise ValueError(f"unknown variant {variant!r}; expected '', 'demo', 'tiny' or 'paper'")
    return c
