"""Image captioning: a CNN encoder and a recurrent decoder, as pure functions over params dicts.

Encoder (chosen by name or dotted path, like cells): images [B, H, W, C] -> the feature grid
a [B, L, D] (L = H' W' positions) and its pooled vector v [B, D] (the mean over positions).
    "cnn"          blocks of 3x3 conv + ReLU (optionally residual, He et al. 2016), 2x2 max pool
    "precomputed"  the identity on features [B, L, D] computed elsewhere (a pretrained network's
                   grid saved as arrays)

Decoder (``Captioner.decoder``), each over any registered or user cell:
    "inject"            the image as a bias in the recurrence (Karpathy & Fei-Fei 2015; Mao et
                        al. 2015):  h_t = phi(W_x x_t + W_h h_{t-1} + [t = 1 or every step] W_i v)
                        h_0 = 0;  logits_t = W_o h_t.  With a cell's project/step split, W_i v
                        joins the projected input (every gate's pre-activation); a user cell
                        with only ``apply`` gets W_i v added to its input x instead
    "show_and_tell"     the image as the first input (Vinyals et al. 2015):
                        x_0 = W_i v,  x_t = E y_{t-1};  h_0 = 0;  logits_t = W_o h_t
    "show_attend_tell"  soft attention over the L positions (Xu et al. 2015), additive scores:
                        alpha_t = softmax_l(v^T tanh(W h_{t-1} + U a_l));
                        z_t = beta_t sum_l alpha_tl a_l,  beta_t = sigmoid(w_b . h_{t-1} + b_b);
                        x_t = [E y_{t-1}; z_t];  every carry leaf (h_0, c_0) and the first
                        query h_0 = tanh(W_init v + b_init), one layer each (Xu's f_init);
                        logits_t = W_o (E y_{t-1} + L_h h_t + L_z z_t)      (the deep output)
    Xu's doubly stochastic regulariser, added by ``loss``:  lambda sum_l (1 - sum_t alpha_tl)^2
    (it pushes every position to receive attention over the caption; as sum_l sum_t alpha_tl
    = T, its floor is L (1 - T / L)^2 when a caption has T < L words, not 0)

    spec = Captioner(get("cnn", residual=True), rnnlab.cells.get("lstm"), len(vocab),
                     (64, 64, 3), decoder="show_attend_tell")
    params = init(key, spec)
    value, aux = loss(spec, params, images, captions, lengths, penalty=1.0)
    out = jax.jit(lambda p, x: decode(spec, p, x, bos_id=1, eos_id=2, max_len=20))(params, x)

Tokens: captions [B, T] are <bos> w_1 ... w_n <eos> <pad>..., lengths [B] count <bos> and <eos>.
``step`` is the one decoding step that teacher forcing, greedy and beam search share
(``rnnlab.models.decoding``), so the teacher-forced log-likelihood of a caption equals the sum of
the step-by-step log-probabilities with which decoding produced it.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

import rnnlab
from rnnlab import attention as attn
from rnnlab.cells.base import Cell
from rnnlab.models import decoding

DECODERS = ("inject", "show_and_tell", "show_attend_tell")

# --- encoders ------------------------------------------------------------------------------------


class Encoder(NamedTuple):
    """An image (or feature) encoder as pure functions.

    init(key, input_shape) -> params          input_shape: one example's shape, e.g. (H, W, C)
    apply(params, inputs [B, *input_shape]) -> (grid [B, L, D], pooled [B, D])
    """

    init: Callable[[jax.Array, tuple[int, ...]], Any]
    apply: Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]]
    name: str = "encoder"


class _Normal(NamedTuple):
    """A placeholder for N(0, std^2) weights of ``shape``, filled in by ``_sample``."""

    shape: tuple[int, ...]
    std: float


def _lecun(shape) -> _Normal:
    return _Normal(tuple(shape), shape[0] ** -0.5)  # N(0, 1 / fan_in), as Flax's default


def _sample(key: jax.Array, tree):
    """Fills every ``_Normal`` leaf of ``tree`` from one draw of N(0, 1).

    One draw per model, not one per array: on the CPU every distinct random shape costs a
    compilation of about a second, which dominated the time of building small models.
    """
    is_normal = lambda x: isinstance(x, _Normal)  # noqa: E731
    leaves, treedef = jax.tree.flatten(tree, is_leaf=is_normal)
    sizes = [math.prod(leaf.shape) if is_normal(leaf) else 0 for leaf in leaves]
    flat = jax.random.normal(key, (sum(sizes),))
    out, start = [], 0
    for leaf, size in zip(leaves, sizes):
        if is_normal(leaf):
            leaf = leaf.std * flat[start : start + size].reshape(leaf.shape)
            start += size
        out.append(leaf)
    return jax.tree.unflatten(treedef, out)


def _conv(p, x):
    y = lax.conv_general_dilated(
        x, p["w"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return y + p["b"]


def _max_pool(x):
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def cnn(*, channels: tuple[int, ...] = (32, 64, 64), kernel_size: int = 3, residual: bool = False):
    """Conv blocks, each halving the resolution: 64x64 input, 3 blocks -> an 8x8 grid (L = 64).

    Block:  plain     y = maxpool(relu(conv(x)))
            residual  y = maxpool(relu(x S + conv2(relu(conv1(x)))))   (He et al. 2016; S is a
                      1x1 projection when the channel count changes, else the identity)

    Args:
        channels: output channels per block (D = channels[-1]).
        kernel_size: odd spatial size of every conv kernel.
        residual: residual blocks (two convs and a skip connection) instead of plain ones.
    """
    if not channels or any(c < 1 for c in channels):
        raise ValueError(f"channels={channels!r}: expected positive channel counts")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size={kernel_size!r}: expected an odd positive int")
    k = kernel_size

    def init(key, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"cnn encoder: expected images (H, W, C), got shape {input_shape}")
        H, W, C = input_shape
        if min(H, W) < 2 ** len(channels):
            raise ValueError(
                f"cnn encoder: {len(channels)} blocks halve {H}x{W} images below one position"
            )
        blocks = []
        for c_out in channels:  # He et al. (2015) init: N(0, 2 / fan_in) before a ReLU
            he = lambda shape: _Normal(shape, math.sqrt(2.0 / math.prod(shape[:-1])))  # noqa: E731
            block = {"conv1": {"w": he((k, k, C, c_out)), "b": jnp.zeros(c_out)}}
            if residual:
                block["conv2"] = {"w": he((k, k, c_out, c_out)), "b": jnp.zeros(c_out)}
                if C != c_out:
                    block["skip"] = _lecun((C, c_out))
            blocks.append(block)
            C = c_out
        return _sample(key, {"blocks": blocks})

    def apply(params, images):
        x = images
        for block in params["blocks"]:
            y = jax.nn.relu(_conv(block["conv1"], x))
            if residual:
                shortcut = x @ block["skip"] if "skip" in block else x
                y = jax.nn.relu(shortcut + _conv(block["conv2"], y))
            x = _max_pool(y)  # [B, H/2, W/2, C_out]
        B, Hg, Wg, D = x.shape
        grid = x.reshape(B, Hg * Wg, D)  # [B, L, D], row-major positions
        return grid, grid.mean(axis=1)

    return Encoder(init, apply, name="cnn")


def precomputed():
    """Features computed elsewhere, [B, L, D] (e.g. a pretrained CNN's last conv grid): no
    params; pooled is the mean over the L positions."""

    def init(key, input_shape):
        del key
        if len(input_shape) != 2:
            raise ValueError(f"precomputed encoder: expected features (L, D), got {input_shape}")
        return {}

    def apply(params, features):
        del params
        return features, features.mean(axis=1)

    return Encoder(init, apply, name="precomputed")


_ENCODERS: dict[str, Callable[..., Encoder]] = {"cnn": cnn, "precomputed": precomputed}


def register(name: str, factory: Callable[..., Encoder]) -> None:
    """Makes ``get(name, **options)`` call ``factory(**options)``."""
    if not callable(factory):
        raise TypeError(f"register({name!r}, ...): factory must be callable, got {factory!r}")
    _ENCODERS[name] = factory


def names() -> list[str]:
    """The registered encoder names."""
    return sorted(_ENCODERS)


def get(name: str, **options) -> Encoder:
    """An encoder by registered name ("cnn", "precomputed") or ``package.module:factory``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"encoder name must be a non-empty string, got {name!r}")
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            msg = f"encoder {name!r}: cannot load {attr!r} from {module_name!r} ({e})"
            raise ValueError(msg) from e
    elif name in _ENCODERS:
        factory = _ENCODERS[name]
    else:
        close = difflib.get_close_matches(name, _ENCODERS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"unknown encoder {name!r}{hint}; known encoders: {names()}, "
            "or a dotted path 'package.module:factory'"
        )
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        params = None
    if params is not None and not any(p.kind is p.VAR_KEYWORD for p in params):
        known = [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(f"encoder {name!r}: unknown option(s) {unknown}; options: {known}")
    encoder = factory(**options)
    if not isinstance(encoder, Encoder):
        raise TypeError(f"encoder {name!r}: the factory returned {type(encoder).__name__}")
    return encoder


# --- the model -----------------------------------------------------------------------------------


class Captioner(NamedTuple):
    """The static description of a captioning model; params come from ``init(key, spec)``.

    input_shape is one example's shape: (H, W, C) images for "cnn", (L, D) for "precomputed".
    """

    encoder: Encoder
    cell: Cell
    vocab_size: int
    input_shape: tuple[int, ...]
    decoder: str = "show_attend_tell"
    embed_size: int = 64
    hidden_size: int = 128
    attention_size: int = 128
    inject_every_step: bool = False  # "inject": W_i v at every step, not only the first


def check_spec(spec: Captioner) -> None:
    """Raises ValueError naming the field when a spec cannot work."""
    if spec.decoder not in DECODERS:
        close = difflib.get_close_matches(str(spec.decoder), DECODERS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"decoder={spec.decoder!r}{hint}: expected one of {list(DECODERS)}")
    if not isinstance(spec.encoder, Encoder):
        raise TypeError(f"encoder: expected an Encoder (captioning.get(...)), got {spec.encoder!r}")
    if not isinstance(spec.cell, Cell):
        raise TypeError(f"cell: expected an rnnlab Cell (rnnlab.cells.get(...)), got {spec.cell!r}")
    for field in ("vocab_size", "embed_size", "hidden_size", "attention_size"):
        if getattr(spec, field) < 1:
            raise ValueError(f"{field} must be positive, got {getattr(spec, field)}")


def _split(cell: Cell) -> bool:
    return cell.project is not None and cell.step is not None


def feature_shape(spec: Captioner, encoder_params) -> tuple[int, int]:
    """(L, D) of the encoder's grid for one example, without running it."""
    x = jax.ShapeDtypeStruct((1, *spec.input_shape), jnp.float32)
    grid, _ = jax.eval_shape(spec.encoder.apply, encoder_params, x)
    if len(grid.shape) != 3:
        raise ValueError(f"encoder {spec.encoder.name!r}: grid must be [B, L, D], got {grid.shape}")
    return grid.shape[1], grid.shape[2]


def _dense(n_in: int, n_out: int) -> dict:
    return {"w": _lecun((n_in, n_out)), "b": jnp.zeros(n_out)}


def init(key: jax.Array, spec: Captioner) -> dict:
    """Params: encoder, word embeddings, the cell, the image pathway and the output layer."""
    check_spec(spec)
    k_enc, k_cell, k_rest = jax.random.split(key, 3)
    E, H, V, A = spec.embed_size, spec.hidden_size, spec.vocab_size, spec.attention_size
    encoder = spec.encoder.init(k_enc, tuple(spec.input_shape))
    _, D = feature_shape(spec, encoder)
    params = {"embed": _Normal((V, E), E**-0.5)}
    if spec.decoder == "inject":
        cell = spec.cell.init(k_cell, E, H)
        if _split(spec.cell):  # W_i v joins the projected input z, whatever its width
            G = jax.eval_shape(spec.cell.project, cell, jnp.zeros((1, E))).shape[-1]
        else:
            G = E  # a user cell without project/step: W_i v is added to the input x
        params |= {"image": _dense(D, G), "out": _dense(H, V)}
    elif spec.decoder == "show_and_tell":
        cell = spec.cell.init(k_cell, E, H)
        params |= {"image": _dense(D, E), "out": _dense(H, V)}
    else:
        cell = spec.cell.init(k_cell, E + D, H)
        leaves = jax.tree.leaves(spec.cell.initial_carry(1, H))
        params |= {
            # the layout of rnnlab.attention.init_additive: W (w_q), U (w_k), b, v
            "attention": {
                "w_q": _lecun((H, A)),
                "w_k": _lecun((D, A)),
                "b": jnp.zeros(A),
                "v": _lecun((A,)),
            },
            "init_carry": [_dense(D, leaf.shape[-1]) for leaf in leaves],
            "init_query": _dense(D, H),
            "beta": _dense(H, 1),
            "deep": {"w_h": _lecun((H, E)), "w_z": _lecun((D, E))},
            "out": _dense(E, V),
        }
    return {"encoder": encoder, "cell": cell, **_sample(k_rest, params)}


def check_inputs(spec: Captioner, inputs, name: str = "images") -> None:
    """Raises ValueError naming ``name`` when inputs are not [batch, *spec.input_shape]."""
    shape = tuple(getattr(inputs, "shape", ()))
    want = tuple(spec.input_shape)
    if shape[1:] == want and len(shape) == len(want) + 1:
        return
    why = "wrong rank"
    if len(shape) == len(want) + 1:
        why = "wrong channel count" if shape[1:-1] == want[:-1] else "wrong size"
    expected = "[batch, " + ", ".join(str(d) for d in want) + "]"
    raise ValueError(f"{name}: expected {expected}, got shape {shape or type(inputs)} ({why})")


def encode(spec: Captioner, params: dict, inputs: jax.Array) -> dict:
    """Runs the encoder; returns the decoder state before the first word (batch-leading leaves).

    Args:
        inputs: [B, *spec.input_shape], images or precomputed features.
    """
    check_inputs(spec, inputs)  # shapes are static, so this works under jit too
    grid, pooled = spec.encoder.apply(params["encoder"], inputs)  # [B, L, D], [B, D]
    B, H, cell = grid.shape[0], spec.hidden_size, spec.cell
    carry = jax.tree.map(lambda c: c.astype(grid.dtype), cell.initial_carry(B, H))
    if spec.decoder == "inject":
        image = pooled @ params["image"]["w"] + params["image"]["b"]  # [B, G] or [B, E]
        return {"carry": carry, "image": image}
    if spec.decoder == "show_and_tell":
        x0 = pooled @ params["image"]["w"] + params["image"]["b"]  # [B, E], the first input
        carry, _ = cell.apply(params["cell"], carry, x0)
        return {"carry": carry}
    leaves = [jnp.tanh(pooled @ p["w"] + p["b"]) for p in params["init_carry"]]
    carry = jax.tree.unflatten(jax.tree.structure(carry), leaves)
    query = jnp.tanh(pooled @ params["init_query"]["w"] + params["init_query"]["b"])  # [B, H]
    projected = attn.additive_keys(params["attention"], grid)  # [B, L, A], once per image
    return {"carry": carry, "query": query, "grid": grid, "projected": projected}


def step(spec: Captioner, params: dict, state: dict, tokens: jax.Array):
    """One decoder step: (state, tokens y_{t-1} [B]) -> (state, logits [B, V], weights).

    weights: attention alpha_t [B, L] for "show_attend_tell", else None.
    For "inject" with a cell that has ``project``/``step``, W_i v is added to the projected input
    (the pre-activation, as the module equation); a user cell with only ``apply`` gets W_i v
    added to its input x instead (so the image passes through the cell's own input weights).
    """
    emb = params["embed"][tokens]  # [B, E]
    cell, p = spec.cell, params["cell"]
    if spec.decoder == "inject":
        image = state["image"]
        if _split(cell):
            carry, h = cell.step(p, state["carry"], cell.project(p, emb) + image)
        else:
            carry, h = cell.apply(p, state["carry"], emb + image)
        image = image if spec.inject_every_step else jnp.zeros_like(image)  # first step only
        logits = h @ params["out"]["w"] + params["out"]["b"]
        return {"carry": carry, "image": image}, logits, None
    if spec.decoder == "show_and_tell":
        carry, h = cell.apply(p, state["carry"], emb)
        return {"carry": carry}, h @ params["out"]["w"] + params["out"]["b"], None
    query, grid = state["query"], state["grid"]
    context, alpha = attn.additive(params["attention"], query, grid, None, state["projected"])
    beta = jax.nn.sigmoid(query @ params["beta"]["w"] + params["beta"]["b"])  # [B, 1], gate
    z = beta * context  # [B, D]
    carry, h = cell.apply(p, state["carry"], jnp.concatenate([emb, z], axis=-1))
    deep = emb + h @ params["deep"]["w_h"] + z @ params["deep"]["w_z"]  # [B, E]
    logits = deep @ params["out"]["w"] + params["out"]["b"]
    return {**state, "carry": carry, "query": h}, logits, alpha


def teacher_forced(spec: Captioner, params: dict, inputs: jax.Array, tokens_in: jax.Array):
    """Logits [B, T, V] and attention weights [B, T, L] (None without attention) for decoder
    inputs tokens_in [B, T] (<bos> w_1 ... w_{T-1})."""
    state = encode(spec, params, inputs)

    def body(state, tokens):
        state, logits, weights = step(spec, params, state, tokens)
        return state, (logits, weights)

    _, (logits, weights) = lax.scan(body, state, tokens_in.T)  # [T, B, V], [T, B, L]
    swap = lambda a: jnp.swapaxes(a, 0, 1)  # noqa: E731
    return swap(logits), None if weights is None else swap(weights)


def attention_penalty(weights: jax.Array, mask: jax.Array) -> jax.Array:
    """Xu et al.'s doubly stochastic term per example: sum_l (1 - sum_t alpha_tl)^2 over real t.

    Args:
        weights: [B, T, L]; mask: [B, T] True on real steps. Returns [B].
    """
    total = jnp.sum(jnp.where(mask[..., None], weights, 0.0), axis=1)  # [B, L]
    return jnp.sum((1.0 - total) ** 2, axis=-1)


def loss(
    spec: Captioner,
    params: dict,
    inputs: jax.Array,
    captions: jax.Array,
    lengths: jax.Array,
    *,
    penalty: float = 1.0,
) -> tuple[jax.Array, dict]:
    """Token cross-entropy (mean over real target tokens) + lambda * mean doubly stochastic term.

    Args:
        inputs: [B, *input_shape]; captions: [B, T] <bos> w_1 ... <eos> <pad>...;
        lengths: [B] tokens per caption including <bos> and <eos>.
        penalty: lambda (used by "show_attend_tell" only).

    Returns:
        (loss, {"nll", "attention_penalty", "tokens"}).
    """
    logits, weights = teacher_forced(spec, params, inputs, captions[:, :-1])
    targets = captions[:, 1:]  # [B, T-1]
    mask = rnnlab.mask_from_lengths(lengths - 1, targets.shape[1])
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(logp, targets[..., None], -1)[..., 0]  # [B, T-1]
    count = jnp.maximum(mask.sum(), 1)
    nll = jnp.sum(jnp.where(mask, nll, 0.0)) / count
    reg = jnp.zeros(()) if weights is None else jnp.mean(attention_penalty(weights, mask))
    total = nll + (penalty * reg if weights is not None else 0.0)
    return total, {"nll": nll, "attention_penalty": reg, "tokens": count}


def decode(
    spec: Captioner,
    params: dict,
    inputs: jax.Array,
    *,
    bos_id: int,
    eos_id: int,
    max_len: int,
    beam_size: int = 1,
    alpha: float = 0.0,
) -> decoding.Decoded:
    """Greedy (beam_size=1) or beam-search captions of inputs [B, *input_shape].

    One ``lax.scan`` over ``max_len`` steps (wrap in ``jax.jit``: it compiles once).

    Returns:
        ``decoding.Decoded``: tokens [B, (K,) max_len], lengths, scores (summed log-probs; for
        beams divided by the length penalty) and extras, the attention weights per word
        [B, (K,) max_len, L] for "show_attend_tell" (None for the other decoders).
    """
    state = encode(spec, params, inputs)

    def step_fn(state: Any, tokens: jax.Array):
        return step(spec, params, state, tokens)

    kw = dict(bos_id=bos_id, eos_id=eos_id, max_len=max_len, batch_size=inputs.shape[0])
    if beam_size == 1:
        return decoding.greedy(step_fn, state, **kw)
    return decoding.beam_search(step_fn, state, beam_size=beam_size, alpha=alpha, **kw)
