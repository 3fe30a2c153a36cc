"""The generated scene-caption data: determinism, captions that parse back to the scene, the
compositional split, the renderer and the vocabulary."""

import numpy as np
import pytest

from rnnlab.data import scenes


def test_generation_is_deterministic_per_seed_split_and_index():
    a, b = scenes.generate(5, seed=3), scenes.generate(5, seed=3)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.captions == b.captions and a.objects == b.objects
    assert scenes.generate(6, seed=3).captions != a.captions
    assert scenes.generate(5, seed=4).captions != a.captions
    assert scenes.generate(5, seed=3, split="valid").captions != a.captions
    ds = scenes.SceneCaptions("train", seed=3, size=10)
    assert ds[5].captions == a.captions and len(ds) == 10
    with pytest.raises(IndexError):
        ds[10]


@pytest.mark.parametrize("split", ["train", "test"])
def test_every_caption_parses_back_to_exactly_the_scene_objects(split):
    counts = set()
    for i in range(150):
        ex = scenes.generate(i, seed=1, split=split, image_size=16)
        assert len(ex.captions) == 5 and len(set(ex.captions)) >= 3  # paraphrases
        want = sorted(o.words for o in ex.objects)
        counts.add(len(ex.objects))
        for c in ex.captions:
            parsed = scenes.parse(c)
            assert sorted(parsed.objects) == want, c
            assert scenes.is_true(c, ex.objects), c
            assert scenes.SCENE_VOCAB.UNK not in scenes.SCENE_VOCAB.encode(c)
    assert counts == {1, 2, 3, 4}


def test_false_captions_are_caught():
    objs = (
        scenes.SceneObject("small", "red", "circle", 0, 0, 0.17, 0.17),
        scenes.SceneObject("large", "blue", "square", 2, 2, 0.83, 0.83),
    )
    assert scenes.is_true("a small red circle to the left of a big blue square", objs)
    assert scenes.is_true("a big blue square below a little red circle", objs)
    assert not scenes.is_true("a small red circle to the right of a big blue square", objs)
    assert not scenes.is_true("a small green circle above a big blue square", objs)  # colour
    assert not scenes.is_true("a large red circle above a big blue square", objs)  # size
    assert not scenes.is_true("a small red circle", objs)  # an object left out
    assert not scenes.is_true("three shapes: a small red circle and a big blue square", objs)
    assert not scenes.is_true("a small red red circle", objs)  # does not parse
    with pytest.raises(ValueError, match="unexpected word 'hexagon' at word 4"):
        scenes.parse("a small red circle hexagon")
    with pytest.raises(ValueError, match="expected 'a <size> <colour> <shape>' at word 0"):
        scenes.parse("a small circle")
    with pytest.raises(ValueError, match="relation 'above' has no object after it"):
        scenes.parse("a small red circle above")


def test_held_out_pairs_never_in_training_and_in_every_test_scene():
    held = set(scenes.HELD_OUT)
    for split in ("train", "valid"):
        for i in range(300):
            ex = scenes.generate(i, seed=2, split=split, image_size=8)
            assert not any((o.colour, o.shape) in held for o in ex.objects)
            named = {(c, s) for cap in ex.captions for _, c, s in scenes.parse(cap).objects}
            assert not named & held
    for i in range(100):
        ex = scenes.generate(i, seed=2, split="test", image_size=8)
        assert any((o.colour, o.shape) in held for o in ex.objects)
    with pytest.raises(ValueError, match="needs held_out pairs"):
        scenes.generate(0, split="test", held_out=())
    with pytest.raises(ValueError, match=r"held_out: \('red', 'cube'\)"):
        scenes.generate(0, held_out=[("red", "cube")])
    with pytest.raises(ValueError, match="split='tset'"):
        scenes.SceneCaptions("tset")


def test_render_draws_each_object_in_its_colour_in_its_cell():
    ex = scenes.generate(11, seed=0, image_size=64)
    assert ex.image.shape == (64, 64, 3) and ex.image.dtype == np.float32
    assert 0.0 <= ex.image.min() and ex.image.max() <= 1.0
    used = set()
    for o in ex.objects:
        y, x = int(o.y * 64), int(o.x * 64)
        np.testing.assert_allclose(ex.image[y, x], scenes.COLOURS[o.colour], atol=1e-5)
        used.add((o.row, o.col))
    empty = [(r, c) for r in range(3) for c in range(3) if (r, c) not in used]
    r, c = empty[0]
    corner = ex.image[int(r * 64 / 3) + 1, int(c * 64 / 3) + 1]
    np.testing.assert_allclose(corner, scenes.BACKGROUND, atol=1e-5)


def test_vocab_encodes_batches_and_refuses_empty_captions():
    v = scenes.SCENE_VOCAB
    tokens, lengths = v.encode_batch(["a small red circle", "there is a big blue square, two"])
    assert tokens.shape == (2, 10) and list(lengths) == [6, 10]
    assert tokens[0, 0] == v.BOS and tokens[0, 5] == v.EOS and tokens[0, 6] == v.PAD
    assert v.decode(tokens[1]) == "there is a big blue square, two"
    with pytest.raises(ValueError, match="caption 1 is empty"):
        v.encode_batch(["a small red circle", "  "])
    built = scenes.Vocab.from_captions(["a cat", "a dog", "a cat"], min_count=2)
    assert built.words[4:] == ["a", "cat"] and built.encode("a dog")[2] == built.UNK
    images, tokens, lengths = scenes.SceneCaptions("train", size=4, image_size=8).batch(
        [0, 3], v, caption_ids=[4, 1]
    )
    assert images.shape == (2, 8, 8, 3) and tokens.shape[0] == 2
