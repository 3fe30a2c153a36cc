"""Captioning models: encoder shapes, decoding agrees with teacher forcing, the image pathways
match their equations, bad input is named, and a tiny model overfits 16 scenes."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rnnlab
from rnnlab.data import scenes
from rnnlab.models import captioning as cap

BOS, EOS, V = 1, 2, 9
IMAGES = jax.random.uniform(jax.random.key(7), (3, 16, 16, 3))


def _spec(decoder, cell="gru", **kw):
    encoder = cap.get("cnn", channels=(4, 8))  # 16x16 -> a 4x4 grid: L = 16, D = 8
    return cap.Captioner(encoder, rnnlab.cells.get(cell), V, (16, 16, 3), decoder, 6, 12, 10, **kw)


def _token_logp(spec, params, tokens):
    """Teacher-forced log P(token) [B, L] for decoded tokens [B, L], and the weights."""
    tgt_in = jnp.concatenate([jnp.full((tokens.shape[0], 1), BOS), tokens[:, :-1]], axis=1)
    logits, weights = cap.teacher_forced(spec, params, IMAGES, tgt_in)
    logp = jax.nn.log_softmax(logits, -1)
    return jnp.take_along_axis(logp, tokens[..., None], -1)[..., 0], weights


@pytest.mark.parametrize("residual", [False, True])
def test_cnn_encoder_output_shapes(residual):
    encoder = cap.get("cnn", channels=(4, 8, 8), residual=residual)
    params = encoder.init(jax.random.key(0), (32, 24, 3))
    grid, pooled = encoder.apply(params, jnp.ones((2, 32, 24, 3)))
    assert grid.shape == (2, 4 * 3, 8) and pooled.shape == (2, 8)  # three 2x2 pools
    np.testing.assert_allclose(pooled, grid.mean(1), rtol=1e-6)
    assert ("skip" in params["blocks"][0]) == residual and "skip" not in params["blocks"][2]
    features = jnp.arange(24.0).reshape(2, 3, 4)
    grid, pooled = cap.get("precomputed").apply({}, features)
    np.testing.assert_array_equal(grid, features)
    np.testing.assert_allclose(pooled, features.mean(1))


@pytest.mark.parametrize(
    "decoder,cell",
    [
        ("inject", "rnn"),
        ("inject", "tests._user_cell:mgu"),
        ("show_and_tell", "lstm"),
        ("show_attend_tell", "lstm"),
    ],  # fmt: skip
)
def test_teacher_forced_likelihood_equals_decoding_log_probs(decoder, cell):
    spec = _spec(decoder, cell, inject_every_step=cell == "rnn")
    params = cap.init(jax.random.key(0), spec)
    out = jax.jit(lambda p, x: cap.decode(spec, p, x, bos_id=BOS, eos_id=EOS, max_len=6))(
        params, IMAGES
    )
    token_logp, weights = _token_logp(spec, params, out.tokens)
    mask = rnnlab.mask_from_lengths(out.lengths, 6)
    np.testing.assert_allclose(jnp.sum(token_logp * mask, 1), out.scores, rtol=1e-5)
    beams = cap.decode(spec, params, IMAGES, bos_id=BOS, eos_id=EOS, max_len=6, beam_size=3)
    token_logp, _ = _token_logp(spec, params, beams.tokens[:, 0])
    mask = rnnlab.mask_from_lengths(beams.lengths[:, 0], 6)
    np.testing.assert_allclose(jnp.sum(token_logp * mask, 1), beams.scores[:, 0], rtol=1e-5)
    assert np.all(beams.scores[:, 0] >= out.scores - 1e-5)  # the best beam beats greedy
    if decoder == "show_attend_tell":
        np.testing.assert_allclose(out.extras, weights, rtol=1e-4, atol=1e-6)
        assert beams.extras.shape == (3, 3, 6, 16)
    else:
        assert out.extras is None and weights is None


def test_attention_weights_sum_to_one_over_the_grid():
    spec = _spec("show_attend_tell")
    params = cap.init(jax.random.key(1), spec)
    tokens = jnp.array([[BOS, 3, 4, 5], [BOS, 6, 7, 0], [BOS, 8, 0, 0]])
    _, weights = cap.teacher_forced(spec, params, IMAGES, tokens)
    assert weights.shape == (3, 4, 16)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
    assert np.all(weights >= 0)


@pytest.mark.parametrize("every_step", [False, True])
def test_inject_adds_image_term_to_the_pre_activation(every_step):
    """rnn cell: h_t = tanh(x_t W_x + h_{t-1} W_h + b + [t = 1 or every] (v W_i + b_i))."""
    spec = _spec("inject", "rnn", inject_every_step=every_step)
    p = cap.init(jax.random.key(2), spec)
    tokens = jnp.array([[BOS, 3, 4]] * 3)
    logits, _ = cap.teacher_forced(spec, p, IMAGES, tokens)
    _, v = spec.encoder.apply(p["encoder"], IMAGES)
    image = v @ p["image"]["w"] + p["image"]["b"]
    c, h = p["cell"], jnp.zeros((3, 12))
    for t in range(3):
        x = p["embed"][tokens[:, t]]
        inject = image if (t == 0 or every_step) else 0.0
        h = jnp.tanh(x @ c["w_x"] + h @ c["w_h"] + c["b"] + inject)
        np.testing.assert_allclose(logits[:, t], h @ p["out"]["w"] + p["out"]["b"], atol=2e-5)


def test_inject_with_a_user_cell_adds_the_image_to_its_input():
    spec = _spec("inject", "tests._user_cell:mgu")
    p = cap.init(jax.random.key(3), spec)
    assert p["image"]["w"].shape == (8, 6)  # [D, E]: onto the input x
    tokens = jnp.array([[BOS, 5]] * 3)
    logits, _ = cap.teacher_forced(spec, p, IMAGES, tokens)
    _, v = spec.encoder.apply(p["encoder"], IMAGES)
    x0 = p["embed"][tokens[:, 0]] + v @ p["image"]["w"] + p["image"]["b"]
    h, _ = spec.cell.apply(p["cell"], jnp.zeros((3, 12)), x0)
    h, _ = spec.cell.apply(p["cell"], h, p["embed"][tokens[:, 1]])
    np.testing.assert_allclose(logits[:, 1], h @ p["out"]["w"] + p["out"]["b"], atol=2e-5)


def test_show_and_tell_feeds_the_image_as_the_first_input():
    spec = _spec("show_and_tell", "gru")
    p = cap.init(jax.random.key(4), spec)
    logits, _ = cap.teacher_forced(spec, p, IMAGES, jnp.full((3, 1), BOS))
    _, v = spec.encoder.apply(p["encoder"], IMAGES)
    h, _ = spec.cell.apply(p["cell"], jnp.zeros((3, 12)), v @ p["image"]["w"] + p["image"]["b"])
    h, _ = spec.cell.apply(p["cell"], h, p["embed"][jnp.full(3, BOS)])
    np.testing.assert_allclose(logits[:, 0], h @ p["out"]["w"] + p["out"]["b"], atol=2e-5)


def test_loss_is_cross_entropy_plus_the_doubly_stochastic_term():
    spec = _spec("show_attend_tell")
    p = cap.init(jax.random.key(5), spec)
    captions = jnp.array([[BOS, 3, 4, EOS], [BOS, 5, EOS, 0], [BOS, 6, EOS, 0]])
    lengths = jnp.array([4, 3, 3])
    total, aux = cap.loss(spec, p, IMAGES, captions, lengths, penalty=0.5)
    logits, w = cap.teacher_forced(spec, p, IMAGES, captions[:, :-1])
    logp, w = np.asarray(jax.nn.log_softmax(logits)), np.asarray(w)
    nll, reg = [], []
    for b in range(3):  # a Python loop over real steps only
        steps = range(int(lengths[b]) - 1)
        nll += [-logp[b, t, int(captions[b, t + 1])] for t in steps]
        reg.append(sum((1.0 - sum(w[b, t, l] for t in steps)) ** 2 for l in range(16)))
    np.testing.assert_allclose(aux["nll"], np.mean(nll), rtol=1e-5)
    np.testing.assert_allclose(aux["attention_penalty"], np.mean(reg), rtol=1e-5)
    np.testing.assert_allclose(total, np.mean(nll) + 0.5 * np.mean(reg), rtol=1e-5)
    padded = jnp.pad(captions, ((0, 0), (0, 3)), constant_values=7)  # junk after each caption
    np.testing.assert_allclose(cap.loss(spec, p, IMAGES, padded, lengths, penalty=0.5)[0], total,
                               rtol=1e-5)  # fmt: skip


def test_precomputed_features_and_a_dotted_path_encoder():
    encoder = cap.get("rnnlab.models.captioning:precomputed")
    spec = cap.Captioner(encoder, rnnlab.cells.get("gru"), V, (5, 7), "show_attend_tell", 6, 8, 4)
    p = cap.init(jax.random.key(0), spec)
    assert p["encoder"] == {}
    out = cap.decode(spec, p, jnp.ones((2, 5, 7)), bos_id=BOS, eos_id=EOS, max_len=3)
    assert out.tokens.shape == (2, 3) and out.extras.shape == (2, 3, 5)


def test_decode_compiles_once_for_new_images():
    spec = _spec("show_attend_tell")
    p = cap.init(jax.random.key(0), spec)
    traces = []

    @jax.jit
    def run(p, x):
        traces.append(1)
        return cap.decode(spec, p, x, bos_id=BOS, eos_id=EOS, max_len=4).tokens

    run(p, IMAGES)
    run(p, IMAGES + 1.0)
    assert len(traces) == 1


def test_bad_input_is_named():
    spec = _spec("inject")
    p = cap.init(jax.random.key(0), spec)
    with pytest.raises(ValueError, match=r"images: expected \[batch, 16, 16, 3\].*wrong size"):
        cap.teacher_forced(spec, p, jnp.ones((2, 32, 32, 3)), jnp.ones((2, 3), int))
    with pytest.raises(ValueError, match="images: .*wrong channel count"):
        cap.decode(spec, p, jnp.ones((2, 16, 16, 1)), bos_id=1, eos_id=2, max_len=3)
    with pytest.raises(ValueError, match="unknown encoder 'cnnn' \\(did you mean 'cnn'\\?\\)"):
        cap.get("cnnn")
    with pytest.raises(ValueError, match="unknown option.*'chanels'"):
        cap.get("cnn", chanels=(4,))
    with pytest.raises(ValueError, match="cannot load"):
        cap.get("rnnlab.models.captioning:nothing_here")
    with pytest.raises(ValueError, match="decoder='show_tell'.*expected one of"):
        cap.init(jax.random.key(0), _spec("show_tell"))
    with pytest.raises(ValueError, match="cnn encoder: 3 blocks halve 4x4"):
        cap.get("cnn", channels=(2, 2, 2)).init(jax.random.key(0), (4, 4, 3))


def test_tiny_model_overfits_16_scenes_to_exact_captions():
    """16 scenes of 1-2 objects at 32x32, one caption each, read back exactly by greedy search."""
    data = scenes.SceneCaptions("train", seed=0, size=16, image_size=32, max_objects=2)
    vocab = scenes.SCENE_VOCAB
    images, captions, lengths = data.batch(range(16), vocab)
    spec = cap.Captioner(
        cap.get("cnn", channels=(8, 16)), rnnlab.cells.get("gru"), len(vocab), (32, 32, 3),
        "show_attend_tell", embed_size=32, hidden_size=48, attention_size=32,
    )  # fmt: skip
    params = cap.init(jax.random.key(0), spec)
    opt = optax.adam(1e-2)

    @jax.jit
    def train(params, opt_state):
        grads, _ = jax.grad(cap.loss, argnums=1, has_aux=True)(
            spec, params, images, captions, lengths
        )
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    @jax.jit
    def train_many(params, opt_state):  # 25 steps per call: one host sync per 25
        return jax.lax.fori_loop(0, 25, lambda _, s: train(*s), (params, opt_state))

    greedy = jax.jit(
        lambda p: cap.decode(spec, p, images, bos_id=vocab.BOS, eos_id=vocab.EOS, max_len=16)
    )
    state = (params, opt.init(params))
    for _ in range(16):
        state = train_many(*state)
        out = greedy(state[0])
        got = [vocab.decode(t) for t in np.asarray(out.tokens)]
        if got == [data[i].captions[0] for i in range(16)]:
            break
    assert got == [data[i].captions[0] for i in range(16)]
    assert all(scenes.is_true(c, data[i].objects) for i, c in enumerate(got))
