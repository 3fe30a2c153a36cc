"""Image captioning: the three decoders (inject, show-and-tell, show-attend-tell) on one encoder.

    python -m experiments.caption --workdir=runs/caption
    python -m experiments.caption --workdir=runs/caption_demo \
        --config=experiments/configs/caption.py:demo
    python -m experiments.caption --workdir=runs/caption --mode=caption a.png b.png
    python -m experiments.caption --workdir=runs/flickr --config.dataset=flickr8k:data/Flickr8k

Data (``dataset``): "scenes" (generated, rnnlab.data.scenes: coloured shapes with five
captions each, test = held-out colour-shape pairs), "flickr8k:DIR" (DIR/captions.txt and
DIR/Images; the last valid_size + test_size images are valid and test), "karpathy:JSON:IMAGEDIR"
(Karpathy's split file) or "tfds:coco_captions" (a prepared TFDS copy under tfds_data_dir).

Variants (measured on 2 CPU cores shared with several other jobs, load average ~16: CPU
seconds are the better guide; wall times on idle cores are estimates):
    ""      scenes at 48x48 with 1-4 objects, 6000 training images (30,000 captions), CNN
            (16, 32, 32) -> a 6x6 grid, GRU 128, 1500 steps of batch 32 per decoder. Not yet
            run end to end: estimated about 10 minutes for all three from 200 steps of
            show_attend_tell (~0.2 CPU-s per step). Expect show_attend_tell ahead, as in "demo".
    "demo"  scenes at 32x32 with 1-2 objects, 2000 training images, 400 steps per decoder:
            109 CPU-s for all three (data, compilation, training, decoding, figures), so about
            1.5 minutes on 2 idle cores. Result (beam, x 100): show_attend_tell BLEU-4 59.0,
            CIDEr-D 264, 23% true on valid, BLEU-4 52.6, CIDEr-D 140, 0% true on the held-out
            pairs of test; inject and show_and_tell BLEU-4 ~48 and 3% true on valid.
    "tiny"  24x24 scenes of one or two objects, 200 training images, 40 steps: seconds of
            compute; for tests (the NLL halves, captions are already in the grammar).
"""

import ml_collections


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0  # fixes data, init and the order of batches
    c.dataset = "scenes"  # scenes | flickr8k:DIR | karpathy:JSON:IMAGEDIR | tfds:coco_captions
    c.tfds_data_dir = ""  # tfds: where coco_captions was prepared ("" = TFDS's default)
    c.image_size = 48  # images are image_size x image_size x 3 (real photos are resized)
    c.train_size = 6000  # scenes: training images (5 captions each); real data: a cap (0 = all)
    c.valid_size = 500  # images scored on valid (scenes: seen colour-shape pairs)
    c.test_size = 500  # images scored on test (scenes: every one has a held-out pair)
    c.max_objects = 4  # scenes: 1 to max_objects shapes per image
    c.min_word_count = 5  # real data: rarer words become <unk> (scenes use the grammar's words)
    c.max_caption_len = 32  # tokens per caption with <bos> and <eos> (longer are cut)
    c.convert_images = False  # convert greyscale/RGBA images to RGB instead of refusing them
    c.encoder = "cnn"  # a registered encoder (rnnlab.models.captioning) or "module:factory"
    c.channels = (16, 32, 32)  # cnn: channels per block; each block halves the image side
    c.residual = False  # cnn: residual blocks (He et al. 2016)
    c.decoders = "inject,show_and_tell,show_attend_tell"  # trained one after the other
    c.cell = "gru"  # the decoders' recurrent cell (a registered name or "module:factory")
    c.embed_size = 64  # E: word embeddings
    c.hidden_size = 128  # H
    c.attention_size = 64  # A: show_attend_tell's additive attention
    c.attention_penalty = 1.0  # lambda of Xu et al.'s doubly stochastic term
    c.optimizer = "adam"  # sgd | momentum | nesterov | adam | adamw | rmsprop | adagrad
    c.learning_rate = 3e-3  # peak learning rate
    c.schedule = "cosine"  # constant | cosine | warmup_cosine | linear
    c.warmup_steps = 0  # for warmup_cosine
    c.clip_norm = 1.0  # clip the gradient's global norm (0: off)
    c.batch_size = 32  # captions per update (one image each), split over devices
    c.steps = 1500  # updates per decoder
    c.log_every = 100  # steps between metric fetches and the valid NLL
    c.checkpoint_every = 500  # steps between checkpoints
    c.max_to_keep = 2  # checkpoints kept per decoder
    c.eval_batch_size = 100  # images per decoding batch (and for the logged valid NLL)
    c.beam_size = 3  # beam search width for the "beam" scores and --mode=caption (1: greedy)
    c.num_samples = 8  # test images in the caption grid figure
    c.num_attention = 3  # test captions drawn word by word with their attention maps
    c.caption_decoder = "show_attend_tell"  # --mode=caption: whose latest checkpoint captions
    c.resize_images = False  # --mode=caption: resize images of another size instead of refusing
    if variant == "demo":
        c.image_size, c.max_objects, c.train_size, c.valid_size, c.test_size = 32, 2, 2000, 200, 200
        c.steps, c.log_every, c.checkpoint_every, c.max_caption_len = 400, 50, 200, 20
    elif variant == "tiny":
        c.image_size, c.max_objects, c.channels = 24, 2, (8, 16)
        c.train_size, c.valid_size, c.test_size = 200, 16, 16
        c.embed_size, c.hidden_size, c.attention_size = 16, 32, 16
        c.learning_rate, c.schedule, c.batch_size = 1e-2, "constant", 16
        c.steps, c.log_every, c.checkpoint_every, c.eval_batch_size = 40, 10, 20, 16
        c.num_samples, c.num_attention, c.max_caption_len = 4, 1, 16
    elif variant:
        raise ValueError(f"unknown variant {variant!r}; known: '', 'demo', 'tiny'")
    return c
