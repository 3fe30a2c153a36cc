"""Character-level language model with truncated BPTT, samples and hidden-unit pages.

    python -m experiments.char_lm --workdir=runs/char_lm
    python -m experiments.char_lm --workdir=runs/char_lm --mode=sample --config.prime='def ' \
        --config.sample_length=500 --config.temperature=0.5
    python -m experiments.char_lm --workdir=runs/shakespeare --config.corpus=tfds:tiny_shakespeare
    python -m experiments.char_lm --workdir=runs/mytext --config.corpus=path/to/text_or_dir

Variants (times as CPU seconds, measured on a shared 2-core machine under heavy load; on 2 idle
cores the wall time is at most about that):
    ""      the first 3 MB of the Python standard library's source (2.7 M train characters,
            V = 97), LSTM 256, B = 32 streams of k = 64 characters, 4000 steps (8.2 M characters,
            3 passes), cosine learning rate from 3e-3: 9 CPU-minutes (about 10 minutes); valid /
            test bpc 1.90 / 1.99 against the unigram baseline's 4.45 / 4.65.
    "demo"  1 MB of the standard library, LSTM 128, 2000 steps: 91 CPU-s (about 1.5 minutes);
            valid / test bpc 2.27 / 2.15 against the unigram baseline's 4.35 / 4.39.
            experiments.reproduce runs it.
    "tiny"  50 k characters of python_docs, LSTM 32, B = 8, k = 16, 60 steps: seconds; for tests
            (which give it a repetitive corpus file and 40 steps).

Resuming may change the fields in experiments.char_lm.RESUMABLE; raising `steps` extends the run
(with the cosine schedule, the remaining learning rates follow the new length).
"""

import ml_collections


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0  # fixes init, the per-step keys and the samples drawn during training
    # Data.
    c.corpus = "python_stdlib"  # python_stdlib | python_docs | tfds:NAME | a UTF-8 file or folder
    c.max_chars = 3_000_000  # keep the first this many characters of the corpus (0: all)
    c.data_dir = ""  # the TFDS data dir for tfds:NAME ("": $TFDS_DATA_DIR or the default)
    c.valid_fraction = 0.05  # the validation text: the piece after the train text
    c.test_fraction = 0.05  # the test text: the end of the corpus
    # Model.
    c.cell = "lstm"  # a registered cell name or "package.module:factory"
    c.cell_options = ""  # the cell factory's options, e.g. "forget_bias=2.0"
    c.hidden_size = 256  # H
    c.num_layers = 1  # stacked recurrent layers
    c.embed_size = 0  # 0 feeds one-hot characters; E > 0 learns a [V, E] embedding
    # Training: B parallel streams, k characters per step, state carried across steps.
    c.batch_size = 32  # B, parallel contiguous streams
    c.seq_len = 64  # k, characters per step (the BPTT truncation length)
    c.optimizer = "adam"  # sgd | momentum | nesterov | adam | adamw | rmsprop | adagrad
    c.learning_rate = 3e-3  # peak learning rate
    c.schedule = "cosine"  # constant | cosine | warmup_cosine | linear (over `steps`)
    c.warmup_steps = 0  # for warmup_cosine
    c.clip_norm = 1.0  # clip the gradient's global norm to this (0: off)
    c.clip_value = 0.0  # clip every gradient element to [-v, v] (0: off)
    c.steps = 4000  # total updates
    c.log_every = 100  # steps between metric fetches (host syncs) and the validation bpc
    c.eval_chars = 20_000  # validation characters for the bpc logged every log_every steps
    c.eval_streams = 16  # parallel streams for every bpc (each starts from the zero state)
    c.checkpoint_every = 500  # steps between checkpoints
    c.max_to_keep = 3  # checkpoints kept
    c.on_nonfinite = "stop"  # stop | skip: what a NaN/inf loss or gradient does
    # Sampling: every sample_every steps into samples.txt, and --mode=sample.
    c.sample_every = 500  # steps between samples (a multiple of log_every; the last step too)
    c.prime = "def "  # the text the samples continue
    c.sample_length = 400  # characters generated after the prime
    c.temperature = 0.8  # divides the logits; 0 is argmax
    c.top_k = 0  # draw among the k most likely characters only (0: all)
    c.sample_seed = 0  # the key of --mode=sample
    # Hidden-unit visualisation of the last run (vis_*.html, unit_*.png).
    c.language = ""  # text features: python | prose | "" (python for python_stdlib and *.py)
    c.vis_chars = 20_000  # validation characters on which units are ranked by correlation
    c.vis_show_chars = 1000  # of those, how many the pages show
    c.vis_top = 1  # best units shown per feature
    c.vis_units = ""  # more units to show, comma-separated indices of the last layer, e.g. "3,17"
    if variant == "demo":
        c.max_chars, c.hidden_size, c.steps = 1_000_000, 128, 2000
        c.sample_every, c.checkpoint_every, c.eval_chars = 500, 500, 10_000
    elif variant == "tiny":
        c.corpus, c.max_chars = "python_docs", 50_000
        c.hidden_size, c.batch_size, c.seq_len = 32, 8, 16
        c.learning_rate, c.steps, c.log_every, c.checkpoint_every = 1e-2, 60, 10, 20
        c.sample_every, c.sample_length, c.eval_chars, c.eval_streams = 20, 40, 2000, 4
        c.vis_chars, c.vis_show_chars, c.vis_top = 2000, 200, 1
    elif variant:
        raise ValueError(f"unknown variant {variant!r}; known: '', 'demo', 'tiny'")
    return c
