"""DiffuRec: approximator, loss and reverse sampler against numpy float64 transcriptions of the
released PyTorch code (eval-mode forward), plus scoring properties and a learning check."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffrec_jax import models, seeds
from diffrec_jax.data import load_dataset
from diffrec_jax.diffusion import gaussian as gd
from diffrec_jax.diffusion import schedules
from diffrec_jax.errors import ConfigError
from diffrec_jax.evaluation import SequenceEvaluator
from diffrec_jax.models import diffurec as du
from diffrec_jax.protocol import SeqBatch, SeqFitData, StepInfo
from diffrec_jax.train import run_plan

INFO = StepInfo(jnp.int32(0), jnp.int32(0))
N_ITEMS, D, HEADS, BLOCKS, L, T = 7, 8, 2, 2, 5, 6

# --- numpy float64 transcription of the released model (eval mode) ------------------------


def f64(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def np_ln(p, x, eps=1e-12):
    u = x.mean(-1, keepdims=True)
    s = ((x - u) ** 2).mean(-1, keepdims=True)
    return p["scale"] * (x - u) / np.sqrt(s + eps) + p["bias"]


def np_lin(p, x):
    return x @ p["w"] + p["b"]


def np_gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def np_mha(p, x, valid, heads, pad_attention):
    b, n, d = x.shape
    dh = d // heads

    def split(a):
        return a.reshape(b, n, heads, dh).transpose(0, 2, 1, 3)

    q, k, v = (split(np_lin(p[name], x)) for name in "qkv")
    corr = q @ k.transpose(0, 1, 3, 2) / math.sqrt(dh)
    if pad_attention == "original":
        # mask.unsqueeze(1).repeat([1, H, 1]).unsqueeze(-1).repeat([1, 1, 1, L])
        mask = np.repeat(valid[:, None, :, None], n, axis=3)
    else:
        mask = np.repeat(valid[:, None, None, :], n, axis=2)
    corr = np.where(mask, corr, -1e9)
    corr = corr - corr.max(-1, keepdims=True)
    prob = np.exp(corr) / np.exp(corr).sum(-1, keepdims=True)
    hidden = (prob @ v).transpose(0, 2, 1, 3).reshape(b, n, d)
    return np_lin(p["o"], hidden)


def np_timestep_embedding(t, dim):
    half = dim // 2
    freqs = np.exp(-math.log(10000) * np.arange(half) / half)
    args = np.asarray(t, np.float64)[:, None] * freqs[None]
    return np.concatenate([np.cos(args), np.sin(args)], axis=-1)


def np_approximator(p, history, x_t, t, lam, *, steps, pad_attention="original", heads=HEADS):
    """Att_Diffuse_model embedding + Diffu_xstart.forward, eval mode (no dropout)."""
    n_items = p["item_emb"].shape[0] - 1
    valid = history != n_items
    rep_item = np_ln(p["ln_in"], p["item_emb"][history])
    emb = np_timestep_embedding(np.asarray(t) * (1000.0 / steps), rep_item.shape[-1])
    hid = np_lin(p["time"]["l1"], emb)
    emb_t = np_lin(p["time"]["l2"], hid / (1 + np.exp(-hid)))
    x = rep_item + lam * (x_t + emb_t)[:, None, :]
    for blk in p["blocks"]:
        x = x + np_mha(blk["attn"], np_ln(blk["ln1"], x), valid, heads, pad_attention)
        x = x + np_lin(blk["ffn2"], np_gelu_tanh(np_lin(blk["ffn1"], np_ln(blk["ln2"], x))))
        if pad_attention == "masked":
            x = x * valid[..., None]
    return np_ln(p["ln_out"], x)[:, -1]


def np_diffusion(steps):
    betas = schedules.trunc_lin(steps)
    abar = np.cumprod(1 - betas)
    prev = np.append(1.0, abar[:-1])
    post_var = betas * (1 - prev) / (1 - abar)
    return {
        "betas": betas,
        "abar": abar,
        "c1": betas * np.sqrt(prev) / (1 - abar),
        "c2": (1 - prev) * np.sqrt(1 - betas) / (1 - abar),
        "log_var": np.log(np.append(post_var[1], betas[1:])),
    }


# --- fixtures --------------------------------------------------------------------------------


def numpy_params(structure, seed):
    """A params tree of `structure`'s shapes, filled from numpy (no JAX RNG to compile):
    LayerNorm scales 1 + 0.2 z, other vectors 0.2 z, matrices z / sqrt(rows)."""
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        z = rng.standard_normal(leaf.shape)
        if len(leaf.shape) == 2:
            z = z / np.sqrt(leaf.shape[0])
        elif getattr(path[-1], "key", None) == "scale":
            z = 1 + 0.2 * z
        else:
            z = 0.2 * z
        return jnp.asarray(z, jnp.float32)

    return jax.tree_util.tree_map_with_path(fill, structure)


def random_params(seed=0, n_items=N_ITEMS, d=D, blocks=BLOCKS, heads=HEADS):
    """Random parameters with :func:`diffurec.init_params`'s structure."""
    shapes = jax.eval_shape(lambda: du.init_params(jax.random.key(0), n_items, d, blocks, heads))
    return numpy_params(shapes, seed)


@functools.partial(jax.jit, static_argnames=("pad_attention",))
def run_approximator(params, hist, x_t, t, lam, pad_attention):
    """Embedding + approximator, eval mode, compiled (eager op-by-op dispatch is slow)."""
    h = du.embed_history(params, hist)
    return du.approximator(
        params, h, x_t, t, lam, hist != N_ITEMS, steps=T, n_heads=HEADS, pad_attention=pad_attention
    )


# One sampler shared by the sampler tests: its score function is compiled once.
L0 = 0.2
SAMPLER = du.diffurec(
    d=D, n_blocks=BLOCKS, n_heads=HEADS, steps=T, lambda_uncertainty=L0, sampling_seed=7
)
SCORE = jax.jit(SAMPLER.score)


@jax.jit
def sampler_noise(users):
    """Start noise [B, d] and the step draws ([T, B, d], [T, B, L, d]) of the sampler."""
    start_keys, step_keys = gd.reverse_keys(seeds.sampling_keys(7, users))
    steps = jax.vmap(lambda t: du.step_noise(gd.step_key(step_keys, t), L, D))(jnp.arange(T))
    return gd.normal(start_keys, (users.shape[0], D)), steps


def histories(n_items=N_ITEMS):
    pad = n_items
    return np.array(
        [
            [pad, pad, pad, 3, 1],
            [0, 1, 2, 3, 4],
            [pad, 6, 5, 0, 2],
            [pad, pad, pad, pad, 6],
        ],
        np.int32,
    )


def test_trunc_lin_and_reverse_log_variance():
    betas = schedules.trunc_lin(32)
    np.testing.assert_allclose(betas[[0, -1]], [0.013125, 0.635], rtol=1e-12)
    ref = np_diffusion(T)
    diff = gd.make_diffusion(schedules.trunc_lin(T))  # the released code's variance: "large"
    np.testing.assert_allclose(diff.large_log_variance, ref["log_var"], rtol=1e-6)


@pytest.mark.parametrize("pad_attention", ["original", "masked"])
def test_approximator_matches_numpy(pad_attention):
    params = random_params()
    hist = histories()
    rng = np.random.default_rng(0)
    x_t = rng.standard_normal((4, D)).astype(np.float32)
    t = np.array([0, 5, 2, 3], np.int32)
    lam = rng.normal(0.3, 0.2, (4, L, D)).astype(np.float32)  # large: x_t matters
    got = run_approximator(
        params, jnp.asarray(hist), jnp.asarray(x_t), jnp.asarray(t), jnp.asarray(lam), pad_attention
    )
    want = np_approximator(f64(params), hist, x_t, t, lam, steps=T, pad_attention=pad_attention)
    np.testing.assert_allclose(np.asarray(got), want, rtol=2e-4, atol=2e-4)


def test_padding_matters_only_in_original_mode():
    params = random_params()
    hist = histories()
    lam = jnp.full((4, L, D), 0.3, jnp.float32)
    x_t, t = jnp.ones((4, D)), jnp.zeros(4, jnp.int32)
    bump = jnp.asarray(np.random.default_rng(5).standard_normal(D), jnp.float32)
    changed = dict(params, item_emb=params["item_emb"].at[N_ITEMS].add(bump))
    outs = {}
    for mode in ("original", "masked"):
        outs[mode] = [
            run_approximator(p, jnp.asarray(hist), x_t, t, lam, mode) for p in (params, changed)
        ]
    np.testing.assert_array_equal(outs["masked"][0], outs["masked"][1])
    diff = np.abs(np.asarray(outs["original"][0] - outs["original"][1])).max(-1)
    assert diff[[0, 2, 3]].min() > 1e-4, diff
    # Row 1 has no padding: the same in both parameter sets.
    np.testing.assert_allclose(outs["original"][0][1], outs["original"][1][1], rtol=1e-6)


def test_loss_matches_numpy():
    tr = du.diffurec(
        d=D,
        n_blocks=BLOCKS,
        n_heads=HEADS,
        steps=T,
        dropout=0.0,
        emb_dropout=0.0,
        lambda_uncertainty=L0,
    )
    params = random_params()
    hist = histories()
    targets = np.array([[2], [5], [1], [0]], np.int32)
    weights = np.array([1.0, 1.0, 1.0, 0.0], np.float32)  # the last row pads the batch
    batch = SeqBatch(jnp.arange(4), jnp.asarray(hist), jnp.asarray(targets), jnp.asarray(weights))
    key = jax.random.key(3)

    @jax.jit
    def run(params, batch, key):
        return tr.loss(params, (), batch, key, INFO), du.training_draws(key, 4, L, D, T)

    (value, (_, aux)), draws = run(params, batch, key)
    t, eps, lam_noise = (np.asarray(a, np.float64) for a in draws[:3])
    t = t.astype(int)
    p = f64(params)
    ref = np_diffusion(T)
    x0 = p["item_emb"][targets[:, 0]]
    x_t = np.sqrt(ref["abar"][t])[:, None] * x0 + np.sqrt(1 - ref["abar"][t])[:, None] * eps
    out = np_approximator(p, hist, x_t, t, L0 + L0 * lam_noise, steps=T)
    logits = out @ p["item_emb"][:N_ITEMS].T
    m = logits.max(-1)
    ce = m + np.log(np.exp(logits - m[:, None]).sum(-1)) - logits[np.arange(4), targets[:, 0]]
    want = (weights * ce).sum() / weights.sum()  # the zero-weight row does not count
    np.testing.assert_allclose(float(value), want, rtol=1e-4)
    np.testing.assert_allclose(float(aux["ce"]), want, rtol=1e-4)


def test_reverse_sampler_matches_python_loop():
    params = random_params()
    hist = histories()
    users = jnp.asarray([3, 0, 11, 5])
    scores = SCORE(params, SeqBatch(users, jnp.asarray(hist)))

    # The Python loop of DiffuRec.reverse_p_sample with the same per-row draws.
    start, (z_all, lam_all) = sampler_noise(users)
    ref = np_diffusion(T)
    p = f64(params)
    x = np.asarray(start, np.float64)
    for i in reversed(range(T)):
        z, lam = np.asarray(z_all[i], np.float64), L0 + L0 * np.asarray(lam_all[i], np.float64)
        t = np.full(4, i)
        x0 = np_approximator(p, hist, x, t, lam, steps=T)
        mean = ref["c1"][i] * x0 + ref["c2"][i] * x
        x = mean + (i != 0) * np.exp(0.5 * ref["log_var"][i]) * z
    want = x @ p["item_emb"][:N_ITEMS].T
    assert scores.shape == (4, N_ITEMS)
    np.testing.assert_allclose(np.asarray(scores), want, rtol=1e-3, atol=1e-3)


def test_score_is_one_scan_deterministic_and_batch_independent():
    tr, score = SAMPLER, SCORE
    params = random_params()
    hist = jnp.asarray(histories())
    users = jnp.asarray([0, 1, 2, 3])
    jaxpr = jax.make_jaxpr(tr.score)(params, SeqBatch(users, hist))
    assert str(jaxpr).count("scan[") == 1
    full = score(params, SeqBatch(users, hist))
    np.testing.assert_array_equal(full, score(params, SeqBatch(users, hist)))
    perm = jnp.asarray([2, 0, 3, 1])
    permuted = score(params, SeqBatch(users[perm], hist[perm]))
    np.testing.assert_allclose(permuted, full[perm], rtol=1e-5, atol=1e-6)
    # Other companions (same batch shape, no recompilation): user 1's row is unchanged, and the
    # noise follows the user index (user 9 with user 1's history scores differently).
    mixed = score(params, SeqBatch(jnp.asarray([9, 7, 1, 8]), hist[jnp.asarray([1, 0, 1, 3])]))
    np.testing.assert_allclose(mixed[2], full[1], rtol=1e-5, atol=1e-6)
    assert not np.allclose(mixed[0], full[1])
    # the sampling seed chooses the noise
    reseeded = du.diffurec(
        d=D, n_blocks=BLOCKS, n_heads=HEADS, steps=T, lambda_uncertainty=L0, sampling_seed=8
    )
    assert not np.allclose(jax.jit(reseeded.score)(params, SeqBatch(users, hist)), full)


def test_registry_and_validation():
    spec = models.get("diffurec")
    rec = spec.build(max_epochs=1)
    assert spec.input == "sequences" and spec.examples == "prefix"
    assert rec.hparams["max_len"] == 50 and rec.hparams["sampling_seed"] == 0
    assert rec.hparams["batch_size"] == 512 and rec.hparams["steps"] == 32
    for bad in (
        {"pad_attention": "x"},
        {"lambda_at_inference": "median"},
        {"d": 10, "n_heads": 4},
        {"steps": 1},
        {"dropout": 1.0},
        {"schedule": "linear"},
        {"lr_decay_steps": -1},
        {"sampling_seed": -1},
        {"sampling_seed": 2**32},
    ):
        with pytest.raises(ConfigError):
            spec.build(**bad)
    with pytest.raises(ConfigError, match="no hyperparameter"):
        spec.build(nope=1)


def test_lr_decay_is_a_staircase():
    tr = du.diffurec(d=D, n_blocks=1, n_heads=HEADS, steps=T, lr_decay_steps=2, lr=1.0)
    tx = tr.optimizer()
    params = {"w": jnp.zeros(())}
    state = tx.init(params)
    sizes = []
    for _ in range(5):
        upd, state = tx.update({"w": jnp.ones(())}, state, params)
        sizes.append(-float(upd["w"]))
    np.testing.assert_allclose(sizes, [1, 1, 0.1, 0.1, 0.01], rtol=1e-4)


def test_learns_more_than_popularity_on_synthetic_sequences():
    seq = load_dataset("synthetic-sequences").extras["sequences"]
    spec = models.get("diffurec")
    hparams = spec.hparams(
        d=32,
        n_blocks=1,
        n_heads=2,
        steps=8,
        max_len=10,
        batch_size=512,
        max_epochs=1,
        eval_every=1,
        patience=None,
        lr=1e-2,
        emb_std=0.1,
        dropout=0.0,
        emb_dropout=0.0,
    )
    data = SeqFitData.from_split(seq)
    plan = spec.train_plan(hparams, data)  # prefix examples, sequence evaluator
    assert plan.config.batch_size == 512 and plan.config.ks == (5, 10, 20)
    result = run_plan(plan, data, jax.random.key(0))
    hr = result.best_metrics["HitRate@10"]
    evaluator = SequenceEvaluator.from_fit_data(data, 10, ks=(10,))
    counts = jnp.asarray(np.bincount(seq.train.items, minlength=seq.n_items), jnp.float32)
    popular = evaluator.evaluate(
        lambda c, b: jnp.broadcast_to(c, (b.history.shape[0], c.shape[0])), counts, ("valid",)
    )["valid"].summary["HitRate@10"]
    assert hr > 1.5 * popular, (hr, popular)
