"""Tokens per second of rnnlab's compiled decoding against a Python loop per token and PyTorch.

    .venv/bin/python scripts/bench_decoding.py                      # all tasks, batch 1 and 32
    .venv/bin/python scripts/bench_decoding.py --quick              # small sizes, under a minute
    .venv/bin/python scripts/bench_decoding.py --tasks greedy,sample --batches 1 --json out.json

Tasks (random params: speed does not depend on training):
    greedy  translation: the translate experiment's encoder-decoder (``rnnlab.models.seq2seq``,
            GRU, Bahdanau attention), vocabularies 1,000, embeddings 128, hidden and attention
            256, sources of 20 tokens, 50 output tokens.
    beam    the same model, beam search with 4 beams.
    sample  character LM (``rnnlab.models.lm``): 2-layer LSTM 256, one-hot input, vocabulary
            96, 500 characters after a one-character prime, temperature 1.
    --quick: vocabularies 200, embeddings 32, hidden 64, sources of 10, 20 output tokens, LM
    hidden 64 and 100 characters, batch 1 and 8.

Contenders, each timed from the input on the host to the output tokens on the host:
    compiled     rnnlab's loop: ``jax.jit`` of ``seq2seq.decode`` (encoder + ``lax.scan``
                 decoder; beam search through ``decoding.beam_search``) or ``lm.sample``.
    python_loop  what users write by hand: a jitted encoder, then a Python loop that calls one
                 jitted step per token (the model step and its argmax, draw, or beam update in
                 one program, the best such a loop can do) and fetches the new tokens to the host
                 (one host sync per token, as a loop that collects tokens or checks <eos> has).
    torch        the same model in PyTorch (nn.GRU encoder, nn.GRUCell decoder with the same
                 additive attention and output layer; nn.LSTM + Linear for the LM), decoded step
                 by step under ``torch.no_grad``; only if torch (the ``bench`` extra) is there.
                 torch's GRU is the reset-after form, rnnlab's default the paper's reset-before
                 form: the same matmul sizes. A hand-written torch beam search reorders only the
                 recurrent state; rnnlab's reorders every state leaf, encoder memory included.
                 On the CPU unless JAX's backend is a GPU and torch sees CUDA: then both run on
                 the card (--torch-device; each call ends by copying its tokens to the host).
                 One intra-op thread by default (--torch-threads; JAX keeps its default pool):
                 these matmuls are small, and with its OpenMP pool on 2 shared cores torch was
                 10 to 20 times slower per step and its spinning threads slowed the JAX
                 contenders run after it.

Every contender decodes exactly ``max_len`` tokens per row (no <eos>: the compiled scan has a
fixed length, and the loops are held to the same count), so tokens/s = batch * max_len / time
(for beam search: the best hypothesis's tokens, batch * max_len, not the beams'). Medians over
interleaved rounds after a warm-up call; ``compile_s`` is the first call's time less the median
(tracing and XLA compilation; for the loops, that of the encoder and the step). ``agree`` says
whether the python loop's tokens equal the compiled loop's (same model, same keys).

This is a benchmark, not a test: it prints and asserts nothing. Timings depend on whatever
else runs on the machine; the load average is reported with them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _interleave import round_orders  # noqa: E402
from jax import lax  # noqa: E402

import rnnlab  # noqa: E402
from experiments._cli import add_xla_cpu_flags  # noqa: E402
from rnnlab.models import lm  # noqa: E402
from rnnlab.models import seq2seq as s2s  # noqa: E402

add_xla_cpu_flags()  # before any JAX computation; see experiments/_cli.py

try:
    import torch
except ImportError:  # the optional `bench` extra
    torch = None

torch_device = "cpu"  # main sets "cuda" where JAX runs on a GPU and torch sees one
BOS, NO_EOS = 1, -1  # no token ends a row: every contender decodes max_len tokens
FULL = dict(vocab=1000, embed=128, hidden=256, src_len=20, max_len=50, beam=4, lm_vocab=96,
            lm_hidden=256, lm_layers=2, chars=500, batches=(1, 32), rounds=5)  # fmt: skip
QUICK = dict(vocab=200, embed=32, hidden=64, src_len=10, max_len=20, beam=4, lm_vocab=96,
             lm_hidden=64, lm_layers=2, chars=100, batches=(1, 8), rounds=5)  # fmt: skip


# --- translation: rnnlab -----------------------------------------------------------------------


def seq2seq_model(cfg: dict, cell: str):
    V, E, H = cfg["vocab"], cfg["embed"], cfg["hidden"]
    spec = s2s.Seq2Seq(rnnlab.cells.get(cell), V, V, E, H, attention="bahdanau", attention_size=H)
    return spec, s2s.init(jax.random.key(0), spec)


def compiled_decode(spec, params, src, src_len, max_len: int, beam: int):
    run = jax.jit(
        lambda p, s, n: (
            s2s.decode(
                spec, p, s, n, bos_id=BOS, eos_id=NO_EOS, max_len=max_len, beam_size=beam
            ).tokens
        )  # fmt: skip
    )

    def call():
        tokens = np.asarray(run(params, src, src_len))  # host sync: the output tokens
        return tokens[:, 0] if beam > 1 else tokens  # the best hypothesis [B, L]

    return call


def loop_greedy(spec, params, src, src_len, max_len: int):
    encode = jax.jit(s2s.encode, static_argnums=0)

    @jax.jit
    def step(params, state, tokens):  # one token: model step and argmax in one program
        state, logits, _ = s2s.step(spec, params, state, tokens)
        return state, jnp.argmax(logits, -1).astype(jnp.int32)

    def call():
        state = encode(spec, params, src, src_len)
        tokens = jnp.full(src.shape[:1], BOS, jnp.int32)
        out = []
        for _ in range(max_len):
            state, tokens = step(params, state, tokens)
            out.append(np.asarray(tokens))  # host sync per token
        return np.stack(out, 1)

    return call


def loop_beam(spec, params, src, src_len, max_len: int, beam: int):
    B, K = src.shape[0], beam
    encode = jax.jit(s2s.encode, static_argnums=0)

    @jax.jit
    def step(params, state, tokens, scores):  # one token for all B * K beams
        state, logits, _ = s2s.step(spec, params, state, tokens)
        logp = jax.nn.log_softmax(logits, -1)
        V = logp.shape[-1]
        cand = (scores[:, :, None] + logp.reshape(B, K, V)).reshape(B, K * V)
        scores, flat = lax.top_k(cand, K)  # [B, K]
        rows = (jnp.arange(B)[:, None] * K + flat // V).reshape(-1)  # [B*K] parent rows
        state = jax.tree.map(lambda a: a[rows], state)
        return state, (flat % V).reshape(-1).astype(jnp.int32), scores, rows

    def call():
        state = jax.tree.map(lambda a: jnp.repeat(a, K, 0), encode(spec, params, src, src_len))
        tokens = jnp.full((B * K,), BOS, jnp.int32)
        scores = jnp.tile(jnp.array([0.0] + [-jnp.inf] * (K - 1)), (B, 1))  # only beam 0 live
        history = np.zeros((B * K, 0), np.int32)
        for _ in range(max_len):
            state, tokens, scores, rows = step(params, state, tokens, scores)
            # host sync per token: backpointers kept on the host, as a hand-written loop does
            history = np.concatenate([history[np.asarray(rows)], np.asarray(tokens)[:, None]], 1)
        return history.reshape(B, K, max_len)[:, 0]  # top_k sorts: beam 0 is the best

    return call


# --- translation: PyTorch ------------------------------------------------------------------------


def torch_seq2seq(cfg: dict, cell: str):
    """The same architecture and sizes in PyTorch (random weights)."""
    nn, V, E, H = torch.nn, cfg["vocab"], cfg["embed"], cfg["hidden"]
    torch.manual_seed(0)
    m = nn.Module()
    m.src_embed, m.tgt_embed = nn.Embedding(V, E), nn.Embedding(V, E)
    m.encoder = (nn.GRU if cell == "gru" else nn.LSTM)(E, H, batch_first=True)
    leaves = 1 if cell == "gru" else 2  # carry leaves: h, or (h, c)
    m.bridge = nn.ModuleList(nn.Linear(H * leaves, H) for _ in range(leaves))
    m.w_q, m.w_k, m.v = nn.Linear(H, H, bias=False), nn.Linear(H, H), nn.Linear(H, 1, bias=False)
    m.decoder = (nn.GRUCell if cell == "gru" else nn.LSTMCell)(E + H, H)
    m.out = nn.Linear(H + H + E, V)
    return m.eval().to(torch_device)


def _torch_encode(m, src):
    keys, final = m.encoder(m.src_embed(src))  # [B, S, H]
    summary = torch.cat(final if isinstance(final, tuple) else (final,), -1)[0]  # [B, F]
    carry = tuple(torch.tanh(b(summary)) for b in m.bridge)  # as rnnlab's bridge, per leaf
    carry = carry[0] if len(carry) == 1 else carry
    # All sources full length, masked as rnnlab.
    mask = torch.ones(src.shape, dtype=torch.bool, device=src.device)
    return carry, torch.zeros_like(keys[:, 0]), keys, m.w_k(keys), mask


def _torch_step(m, carry, out, keys, projected, mask, tokens):
    emb = m.tgt_embed(tokens)  # [B, E]
    scores = m.v(torch.tanh(m.w_q(out)[:, None] + projected))[..., 0]  # [B, S]
    weights = torch.softmax(scores.masked_fill(~mask, -torch.inf), -1)
    context = torch.einsum("bs,bsh->bh", weights, keys)
    carry = m.decoder(torch.cat([emb, context], -1), carry)
    out = carry if torch.is_tensor(carry) else carry[0]
    return carry, out, m.out(torch.cat([out, context, emb], -1))


def torch_decode(m, src_np, max_len: int, beam: int):
    device = torch_device
    src = torch.from_numpy(src_np).long().to(device)
    B, K = src.shape[0], beam

    @torch.no_grad()
    def call():
        carry, out, keys, projected, mask = _torch_encode(m, src)
        if K > 1:  # memory tiled once; the loop reorders only the recurrent state
            rep = lambda t: t.repeat_interleave(K, 0)  # noqa: E731
            carry = rep(carry) if torch.is_tensor(carry) else tuple(map(rep, carry))
            out, keys, projected, mask = rep(out), rep(keys), rep(projected), rep(mask)
            scores = torch.full((B, K), -torch.inf, device=device)
            scores[:, 0] = 0.0
        tokens = torch.full((B * K,), BOS, dtype=torch.long, device=device)
        history = torch.zeros((B * K, 0), dtype=torch.long, device=device)
        for _ in range(max_len):
            carry, out, logits = _torch_step(m, carry, out, keys, projected, mask, tokens)
            if K == 1:
                tokens = logits.argmax(-1)
                history = torch.cat([history, tokens[:, None]], 1)
                continue
            logp = torch.log_softmax(logits, -1).view(B, K, -1)
            V = logp.shape[-1]
            scores, flat = (scores[:, :, None] + logp).view(B, K * V).topk(K, -1)
            rows = (torch.arange(B, device=device)[:, None] * K + flat // V).view(-1)
            tokens = (flat % V).view(-1)
            carry = carry[rows] if torch.is_tensor(carry) else tuple(c[rows] for c in carry)
            out, history = out[rows], torch.cat([history[rows], tokens[:, None]], 1)
        return history.view(B, K, max_len)[:, 0].cpu().numpy()  # .cpu(): waits for the GPU

    return call


# --- character LM --------------------------------------------------------------------------------


def lm_contenders(cfg: dict, B: int) -> dict:
    spec = lm.make_spec("lstm", vocab_size=cfg["lm_vocab"], hidden_size=cfg["lm_hidden"],
                        num_layers=cfg["lm_layers"])  # fmt: skip
    params = lm.init(jax.random.key(0), spec)
    key, length = jax.random.key(1), cfg["chars"]
    prime = jnp.full((B, 1), 5, jnp.int32)

    def compiled():
        return np.asarray(lm.sample(spec, params, key, prime, length))  # host sync: the output

    @jax.jit
    def step(params, carries, tokens, t):  # one character: model step and draw in one program
        carries, logits = lm.apply(spec, params, tokens[:, None], carries)
        drawn = jax.random.categorical(jax.random.fold_in(key, t), logits[:, 0], -1)
        return carries, drawn.astype(jnp.int32)  # lm.sample's key schedule: fold_in(key, t)

    def loop():
        carries, tokens = lm.initial_carries(spec, params, B), prime[:, 0]
        out = []
        for t in range(length):
            carries, tokens = step(params, carries, tokens, t)
            out.append(np.asarray(tokens))  # host sync per character
        return np.stack(out, 1)

    fns = {"compiled": compiled, "python_loop": loop}
    if torch is not None:
        fns["torch"] = torch_sample(cfg, B)
    return fns


def torch_sample(cfg: dict, B: int):
    V, H = cfg["lm_vocab"], cfg["lm_hidden"]
    torch.manual_seed(0)
    rnn = torch.nn.LSTM(V, H, cfg["lm_layers"]).eval().to(torch_device)
    readout = torch.nn.Linear(H, V).eval().to(torch_device)

    @torch.no_grad()
    def call():
        tokens, carry, out = torch.full((B,), 5, dtype=torch.long, device=torch_device), None, []
        for _ in range(cfg["chars"]):
            x = torch.nn.functional.one_hot(tokens, V).float()[None]  # [1, B, V]
            y, carry = rnn(x, carry)
            probs = torch.softmax(readout(y[0]), -1)  # temperature 1
            tokens = torch.multinomial(probs, 1)[:, 0]
            out.append(tokens)
        return torch.stack(out, 1).cpu().numpy()

    return call


# --- timing --------------------------------------------------------------------------------------


def _timed(fn):
    start = time.perf_counter()
    out = fn()  # every contender returns host numpy tokens: the clock stops after the sync
    return time.perf_counter() - start, out


def bench(task: str, fns: dict, batch: int, tokens: int, rounds: int) -> dict:
    first, outputs = {}, {}
    for name, fn in fns.items():  # compile and warm up
        first[name], outputs[name] = _timed(fn)
        fn()
    times = {k: [] for k in fns}
    # interleaved: one call of each contender per round, each following every other equally often
    for order in round_orders(list(fns), rounds):
        for name in order:
            times[name].append(_timed(fns[name])[0])
    median = {k: statistics.median(v) for k, v in times.items()}
    r = {
        "task": task,
        "batch": batch,
        "tokens": tokens,
        "median_ms": {k: round(1e3 * v, 3) for k, v in median.items()},
        "min_ms": {k: round(1e3 * min(v), 3) for k, v in times.items()},
        "tokens_per_s": {k: round(batch * tokens / v, 1) for k, v in median.items()},
        "compile_s": {k: round(max(first[k] - median[k], 0.0), 3) for k in fns if k != "torch"},
        "agree": bool(np.array_equal(outputs["compiled"], outputs["python_loop"])),
        "speedup_vs_python_loop": round(median["python_loop"] / median["compiled"], 2),
    }
    if "torch" in median:
        r["speedup_vs_torch"] = round(median["torch"] / median["compiled"], 2)
    return r


def run_all(cfg: dict, tasks: list[str], batches, cell: str, rounds: int) -> list[dict]:
    results = []
    if {"greedy", "beam"} & set(tasks):
        spec, params = seq2seq_model(cfg, cell)
        tm = torch_seq2seq(cfg, cell) if torch is not None else None
    for B in batches:
        rng = np.random.default_rng(B)
        src_np = rng.integers(3, cfg["vocab"], (B, cfg["src_len"])).astype(np.int32)
        src, src_len = jnp.asarray(src_np), jnp.full((B,), cfg["src_len"], jnp.int32)
        L = cfg["max_len"]
        for task in tasks:
            if task == "sample":
                results.append(bench(task, lm_contenders(cfg, B), B, cfg["chars"], rounds))
                print(f"done: {task} batch {B}", file=sys.stderr, flush=True)
                continue
            k = cfg["beam"] if task == "beam" else 1
            fns = {"compiled": compiled_decode(spec, params, src, src_len, L, k)}
            if k == 1:
                fns["python_loop"] = loop_greedy(spec, params, src, src_len, L)
            else:
                fns["python_loop"] = loop_beam(spec, params, src, src_len, L, k)
            if tm is not None:
                fns["torch"] = torch_decode(tm, src_np, L, k)
            results.append(bench(task, fns, B, L, rounds))
            print(f"done: {task} batch {B}", file=sys.stderr, flush=True)
    return results


def print_table(results):
    names = [n for n in ("compiled", "python_loop", "torch") if n in results[0]["tokens_per_s"]]
    head = f"{'task':7} {'batch':>5} " + " ".join(f"{n + ' tok/s':>18}" for n in names)
    print("\n" + head + f" {'x loop':>7} {'x torch':>7} {'compile s':>9} {'agree':>5}")
    for r in results:
        cols = " ".join(f"{r['tokens_per_s'].get(n, float('nan')):18.0f}" for n in names)
        vs_torch = r.get("speedup_vs_torch", float("nan"))
        print(
            f"{r['task']:7} {r['batch']:5d} {cols} {r['speedup_vs_python_loop']:7.2f} "
            f"{vs_torch:7.2f} {r['compile_s']['compiled']:9.2f} {str(r['agree']):>5}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="greedy,beam,sample", help="comma-separated")
    parser.add_argument("--batches", help="comma-separated batch sizes (default 1,32)")
    parser.add_argument("--rounds", type=int, help="timed calls per contender (default 5)")
    parser.add_argument("--cell", default="gru", choices=("gru", "lstm"), help="seq2seq cell")
    parser.add_argument("--quick", action="store_true", help="small sizes, batch 1 and 8")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument(
        "--torch-device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto: cuda where JAX's backend is a GPU and torch sees CUDA, else cpu",
    )
    parser.add_argument("--json", help="also write the report to this path")
    args = parser.parse_args()
    cfg = QUICK if args.quick else FULL
    batches = [int(b) for b in args.batches.split(",")] if args.batches else cfg["batches"]
    rounds = args.rounds or cfg["rounds"]
    global torch_device
    if torch is not None:
        torch.set_num_threads(args.torch_threads)
        gpu = jax.default_backend() == "gpu" and torch.cuda.is_available()
        torch_device = args.torch_device
        if torch_device == "auto":
            torch_device = "cuda" if gpu else "cpu"
        elif torch_device == "cuda" and not torch.cuda.is_available():
            parser.error("--torch-device cuda: this torch sees no CUDA device (a CPU build?)")

    load_before = os.getloadavg()
    results = run_all(cfg, args.tasks.split(","), batches, args.cell, rounds)
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "jax_backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "torch_device": None if torch is None else torch_device,
        "torch_threads": None if torch is None else torch.get_num_threads(),
        "load_average": {  # others' load skews timings
            "before": [round(v, 2) for v in load_before],
            "after": [round(v, 2) for v in os.getloadavg()],
        },
        "versions": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "torch": None if torch is None else torch.__version__,
            "numpy": np.__version__,
        },
        "sizes": {**cfg, "batches": list(batches), "rounds": rounds, "cell": args.cell},
        "results": results,
    }
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    print_table(results)


if __name__ == "__main__":
    main()
