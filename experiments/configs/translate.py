"""Translation with encoder-decoders, with and without attention (SCAN by default).

    python -m experiments.translate --workdir=runs/tr
    python -m experiments.translate --workdir=runs/tr_len --config.dataset=scan:length
    python -m experiments.translate --workdir=runs/tr_jump --config.dataset=scan:addprim_jump
    python -m experiments.translate --workdir=runs/tr_fr --config.dataset=tsv:fra.txt \
        --config.tokenizer=word --config.max_length=20 --config.steps=20000
    python -m experiments.translate --workdir=runs/tr_wmt \
        --config.dataset=tfds:wmt14_translate/fr-en
    echo "jump twice after walk left" | python -m experiments.translate --workdir=runs/tr \
        --mode=translate

Each kind in ``attention`` (comma-separated) trains one model into DIR/<kind>/; DIR/results.json,
the figures and report.md compare them. ``--mode=translate`` reads sentences from stdin and
prints the first kind's translations from its latest checkpoint (beam_size, alpha).

Variants (times on 2 CPU cores; the step costs about 30 ms of CPU for outputs of ~15 tokens
and 140 ms at 50 with attention, hence the length buckets):
    ""      SCAN simple split, one-layer GRU 128 (embeddings 64), Bahdanau attention and none,
            3,000 steps of batch 64 each, lr 1e-3, full test split (4,182): about 10 minutes in
            all (estimated from the demo's per-step cost). The issue measured about 97% exact
            match with attention at this scale; scan:length about 7%, scan:addprim_jump 0%
            (Lake & Baroni 2018's pattern), as separate commands (above).
    "demo"  the same at 600 steps each, lr 3e-3, 6 buckets, the first 1,000 test pairs:
            exact match (greedy / beam 5) 76.2% / 81.0% with attention vs 36.2% / 43.4%
            without; BLEU 93.9 / 96.5 vs 64.8 / 84.9; without attention exact match falls to 0
            beyond ~25 actions. Measured 5.9 minutes wall on 2 cores shared at load ~9 (3.7
            minutes of CPU); estimated 2 to 4 minutes on idle cores, not measured there.
    "tiny"  SCAN simple restricted to pairs of at most 4 tokens a side (284 train / 84 test),
            Bahdanau only, GRU 32, 200 steps of batch 32: exact match far above chance (~0)
            in tens of seconds, most of it compiling; for tests.
"""

import ml_collections


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0  # fixes init, data order and every per-step draw
    # Data.
    c.dataset = "scan:simple"  # scan:SPLIT | synthetic | tsv:PATH | tfds:NAME
    c.tokenizer = "space"  # word | space | char (tsv and tfds; SCAN and synthetic are spaced)
    c.lowercase = False  # tsv/tfds: lowercase both sides
    c.min_count = 1  # tokens seen fewer times in train map to <unk>
    c.max_length = 0  # drop pairs with more tokens on either side (0: keep all)
    c.max_train_pairs = 0  # use only the first N training pairs (0: all)
    c.max_test_pairs = 0  # evaluate on the first N test pairs (0: all)
    c.tfds_data_dir = ""  # TFDS data dir ("" = TFDS's default); prepared as array_record
    c.test_split = "test"  # tfds: the split to evaluate on (tsv: the seeded 10% test part)
    c.synthetic_pairs = 20000  # synthetic: training pairs (test: 2,000 from another stream)
    c.num_buckets = 4  # length buckets (quantiles of the training lengths); 1 pads to the max
    # Model.
    c.attention = "bahdanau,none"  # comma list of none|bahdanau|luong_dot|luong_general
    c.cell = "gru"  # a registered cell name or "package.module:factory"
    c.hidden_size = 128  # H, encoder and decoder
    c.embed_size = 64  # E, source and target embeddings
    c.attention_size = 128  # A, Bahdanau's additive attention
    c.num_layers = 1  # stacked layers, encoder and decoder each
    c.bidirectional = False  # bidirectional encoder (Bahdanau 2015)
    c.reverse_source = False  # feed the source reversed (Sutskever et al. 2014)
    # Training.
    c.teacher_forcing = 1.0  # probability of feeding the reference token (< 1: own argmax)
    c.label_smoothing = 0.0  # Szegedy et al. 2016; 0.1 is common for real translation
    c.optimizer = "adam"  # sgd | momentum | nesterov | adam | adamw | rmsprop | adagrad
    c.learning_rate = 1e-3  # peak learning rate
    c.schedule = "constant"  # constant | cosine | warmup_cosine | linear
    c.warmup_steps = 0  # for warmup_cosine
    c.clip_norm = 5.0  # clip the gradient's global norm (0: off)
    c.batch_size = 64  # global batch, split over all devices
    c.steps = 3000  # updates per model
    c.log_every = 250  # steps between metric fetches and the quick eval
    c.checkpoint_every = 1000  # steps between checkpoints
    c.max_to_keep = 2  # checkpoints kept
    c.on_nonfinite = "stop"  # stop | skip
    # Evaluation and decoding.
    c.eval_batch_size = 256  # decoding batch (the last one padded): one compiled shape
    c.quick_eval_pairs = 256  # test pairs decoded greedily at each log step
    c.beam_size = 5  # beam width for the beam metrics and --mode=translate (1: greedy)
    c.alpha = 0.6  # GNMT length penalty exponent (0: none)
    c.max_decode_length = 0  # output tokens decoded (0: longest reference + 10, from data)
    c.bleu_tokenize = "auto"  # sacrebleu tokenizer; auto: none for scan/synthetic, else 13a
    c.num_heatmaps = 3  # test sentences whose attention is drawn
    if variant == "demo":
        c.steps, c.learning_rate, c.log_every, c.checkpoint_every = 600, 3e-3, 200, 300
        c.num_buckets, c.max_test_pairs = 6, 1000
    elif variant == "tiny":
        c.max_length, c.hidden_size, c.embed_size, c.attention_size = 4, 32, 16, 32
        c.attention, c.learning_rate, c.batch_size, c.num_buckets = "bahdanau", 1e-2, 32, 2
        c.steps, c.log_every, c.checkpoint_every, c.quick_eval_pairs = 200, 50, 50, 64
        c.eval_batch_size, c.beam_size, c.num_heatmaps = 64, 3, 1
    elif variant:
        raise ValueError(f"unknown variant {variant!r}; known: '', 'demo', 'tiny'")
    return c
