"""DreamRec: guidance encoder, denoiser, loss and guided sampler against numpy float64
transcriptions of the released PyTorch code (eval mode), plus scoring properties and a learning
check."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

from diffrec_jax import models, seeds
from diffrec_jax.data import load_dataset
from diffrec_jax.diffusion import gaussian as gd
from diffrec_jax.errors import ConfigError
from diffrec_jax.evaluation import SequenceEvaluator
from diffrec_jax.models import dreamrec as dr
from diffrec_jax.protocol import SeqBatch, SeqFitData, StepInfo
from diffrec_jax.train import run_plan

INFO = StepInfo(jnp.int32(0), jnp.int32(0))
N_ITEMS, D, L, T = 7, 8, 5, 6

# --- numpy float64 transcription of the released Tenc / diffusion (eval mode) ---------------


def f64(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def np_ln(p, x, eps=1e-5):
    u = x.mean(-1, keepdims=True)
    s = ((x - u) ** 2).mean(-1, keepdims=True)
    return p["scale"] * (x - u) / np.sqrt(s + eps) + p["bias"]


def np_lin(p, x):
    return x @ p["w"] + p["b"]


def np_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return np.exp(x) / np.exp(x).sum(-1, keepdims=True)


def to_original_layout(history, pad):
    """Our left-padded rows -> the original's pad_history rows (items first) and len_seq."""
    states, lengths = [], []
    for row in history:
        items = [int(i) for i in row if i != pad]
        lengths.append(len(items))
        states.append(items + [pad] * (len(row) - len(items)))
    return np.array(states), np.array(lengths)


def np_cacu_h(p, history):
    """Tenc.cacu_h without dropout and without the null replacement."""
    pad = p["item_emb"].shape[0] - 1
    states, lengths = to_original_layout(history, pad)
    d = p["item_emb"].shape[1]
    seq = p["item_emb"][states] + p["pos"][None, : states.shape[1]]
    mask = (states != pad)[..., None].astype(np.float64)
    seq = seq * mask
    queries = np_ln(p["ln1"], seq)
    q = np_lin(p["attn"]["q"], queries)
    k = np_lin(p["attn"]["k"], seq)
    v = np_lin(p["attn"]["v"], seq)
    mat = q @ k.transpose(0, 2, 1) / d**0.5
    key_mask = np.sign(np.abs(seq.sum(-1)))[:, None, :]
    mat = np.where(key_mask == 0, -(2.0**32) + 1, mat)
    tril = np.tril(np.ones(mat.shape[1:]))[None]
    mat = np.where(tril == 0, -(2.0**32) + 1, mat)
    probs = np_softmax(mat) * np.sign(np.abs(queries.sum(-1)))[:, :, None]  # query masking
    att = probs @ v + queries
    x = np_ln(p["ln2"], att)
    ff = np_ln(p["ln_ff"], np_lin(p["ffn2"], np.maximum(np_lin(p["ffn1"], x), 0)) + x)
    ff = np_ln(p["ln3"], ff * mask)
    return ff[np.arange(len(states)), lengths - 1]


def np_gelu(x):
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def np_denoise(p, x, h, t):
    d = x.shape[-1]
    half = d // 2
    emb = math.log(10000) / (half - 1)
    freqs = np.exp(np.arange(half) * -emb)
    args = np.asarray(t, np.float64)[:, None] * freqs[None]
    temb = np.concatenate([np.sin(args), np.cos(args)], axis=-1)
    temb = np_lin(p["time"]["l2"], np_gelu(np_lin(p["time"]["l1"], temb)))
    z = np.concatenate([x, h, temb], axis=1)
    for i, layer in enumerate(p["diffuser"]):
        z = np_lin(layer, z)
        if i < len(p["diffuser"]) - 1:
            z = np_gelu(z)
    return z


def np_diffusion(betas):
    abar = np.cumprod(1 - betas)
    prev = np.append(1.0, abar[:-1])
    return {
        "abar": abar,
        "c1": betas * np.sqrt(prev) / (1 - abar),
        "c2": (1 - prev) * np.sqrt(1 - betas) / (1 - abar),
        "post_var": betas * (1 - prev) / (1 - abar),
    }


# --- fixtures --------------------------------------------------------------------------------


def random_params(seed=0, diffuser="mlp1"):
    """Random parameters with :func:`dreamrec.init_params`'s structure, from numpy (no JAX RNG
    to compile): LayerNorm scales 1 + 0.2 z, other vectors 0.2 z (N(0, 1) for the null
    embedding), matrices z / sqrt(rows) (N(0, 1) for the item and positional tables)."""
    shapes = jax.eval_shape(lambda: dr.init_params(jax.random.key(0), N_ITEMS, D, L, diffuser))
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = getattr(path[-1], "key", None)
        z = rng.standard_normal(leaf.shape)
        if name in ("item_emb", "pos", "null"):
            pass
        elif len(leaf.shape) == 2:
            z = z / np.sqrt(leaf.shape[0])
        elif name == "scale":
            z = 1 + 0.2 * z
        else:
            z = 0.2 * z
        return jnp.asarray(z, jnp.float32)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def histories():
    pad = N_ITEMS
    return np.array(
        [
            [pad, pad, pad, 3, 1],
            [0, 1, 2, 3, 4],
            [pad, 6, 5, 0, 2],
            [pad, pad, pad, pad, 6],
        ],
        np.int32,
    )


guidance = jax.jit(dr.guidance)
# One sampler shared by the sampler tests: its score function is compiled once.
SAMPLER = dr.dreamrec(d=D, steps=T, max_len=L, w=2.0, schedule="linear", sampling_seed=7)
SCORE = jax.jit(SAMPLER.score)


@jax.jit
def sampler_noise(users):
    """Start noise [B, d] and the step noises [T, B, d] of the sampler (seed 7): the first half
    of each user's key, then fold_in(second half, t) (gaussian.reverse_keys)."""
    start, steps = gd.reverse_keys(seeds.sampling_keys(7, users))
    b = users.shape[0]
    z = jax.vmap(lambda t: gd.normal(gd.step_key(steps, t), (b, D)))(jnp.arange(T))
    return gd.normal(start, (b, D)), z


def test_schedules_match_the_original_formulas():
    x = np.linspace(1, 2 * 500 + 1, 500)
    np.testing.assert_allclose(
        dr.betas("exp", 500), 1 - np.exp(-0.1 / 500 - x * 0.5 * 9.9 / 500**2), rtol=1e-12
    )
    np.testing.assert_allclose(dr.betas("linear", 4, 0.1, 0.4), [0.1, 0.2, 0.3, 0.4])
    cos = dr.betas("cosine", 2000)
    assert cos.min() >= 1e-4 and cos.max() <= 0.9999
    with pytest.raises(ConfigError, match="schedule"):
        dr.betas("quadratic", 10)


def test_right_pad():
    hist = histories()
    states, lengths = dr.right_pad(jnp.asarray(hist), N_ITEMS)
    want_states, want_lengths = to_original_layout(hist, N_ITEMS)
    np.testing.assert_array_equal(states, want_states)
    np.testing.assert_array_equal(lengths, want_lengths)


def test_guidance_matches_numpy():
    params = random_params()
    hist = histories()
    got = guidance(params, jnp.asarray(hist))
    np.testing.assert_allclose(np.asarray(got), np_cacu_h(f64(params), hist), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("diffuser", ["mlp1", "mlp2"])
def test_denoiser_and_guidance_formula(diffuser):
    params = random_params(diffuser=diffuser)
    rng = np.random.default_rng(0)
    x, h = rng.standard_normal((2, 4, D)).astype(np.float32)
    t = np.array([0, 1, 250, 499])
    got = jax.jit(dr.denoise)(params, jnp.asarray(x), jnp.asarray(h), jnp.asarray(t))
    p = f64(params)
    np.testing.assert_allclose(np.asarray(got), np_denoise(p, x, h, t), rtol=1e-4, atol=1e-4)
    for w in (0.0, 2.0, 4.0):
        guided = jax.jit(dr.guided_x0)(params, x, h, jnp.asarray(t), jnp.float32(w))
        null = np.broadcast_to(p["null"], h.shape)
        want = (1 + w) * np_denoise(p, x, h, t) - w * np_denoise(p, x, null, t)
        np.testing.assert_allclose(np.asarray(guided), want, rtol=1e-4, atol=1e-4)


def test_loss_matches_numpy():
    tr = dr.dreamrec(d=D, steps=T, dropout=0.0, max_len=L, p_uncond=0.5, schedule="linear")
    params = random_params()
    hist = histories()
    targets = np.array([[2], [5], [1], [0]], np.int32)
    weights = np.array([1.0, 1.0, 1.0, 0.0], np.float32)  # the last row pads the batch
    batch = SeqBatch(jnp.arange(4), jnp.asarray(hist), jnp.asarray(targets), jnp.asarray(weights))
    key = jax.random.key(3)

    @jax.jit
    def run(params, batch, key):
        return tr.loss(params, (), batch, key, INFO), dr.training_draws(key, 4, D, T, 0.5)

    (value, (_, aux)), (t, eps, keep, _) = run(params, batch, key)
    t, eps, keep = np.asarray(t), np.asarray(eps, np.float64), np.asarray(keep)
    assert keep.any() and not keep.all()  # both branches are exercised
    p = f64(params)
    ref = np_diffusion(dr.betas("linear", T))
    h = np.where(keep[:, None], np_cacu_h(p, hist), p["null"][None])
    x0 = p["item_emb"][targets[:, 0]]
    x_t = np.sqrt(ref["abar"][t])[:, None] * x0 + np.sqrt(1 - ref["abar"][t])[:, None] * eps
    mse = ((x0 - np_denoise(p, x_t, h, t)) ** 2).mean(-1)
    want = (weights * mse).sum() / weights.sum()
    np.testing.assert_allclose(float(value), want, rtol=1e-4)
    np.testing.assert_allclose(float(aux["mse"]), want, rtol=1e-4)


def test_guided_sampler_matches_python_loop():
    w = 2.0
    params = random_params()
    hist = histories()
    users = jnp.asarray([3, 0, 11, 5])
    scores = SCORE(params, SeqBatch(users, jnp.asarray(hist)))

    # diffusion.sample / p_sample of the original with the same per-row draws.
    start, step_noise = sampler_noise(users)
    ref = np_diffusion(dr.betas("linear", T))
    p = f64(params)
    h = np_cacu_h(p, hist)
    null = np.broadcast_to(p["null"], h.shape)
    x = np.asarray(start, np.float64)
    for n in reversed(range(T)):
        t = np.full(4, n)
        x_start = (1 + w) * np_denoise(p, x, h, t) - w * np_denoise(p, x, null, t)
        mean = ref["c1"][n] * x_start + ref["c2"][n] * x
        if n == 0:
            x = mean
        else:
            z = np.asarray(step_noise[n], np.float64)
            x = mean + np.sqrt(ref["post_var"][n]) * z
    want = x @ p["item_emb"][:N_ITEMS].T
    assert scores.shape == (4, N_ITEMS)
    np.testing.assert_allclose(np.asarray(scores), want, rtol=1e-3, atol=1e-3)


def test_score_is_one_scan_deterministic_and_batch_independent():
    tr, score = SAMPLER, SCORE
    params = random_params()
    hist = jnp.asarray(histories())
    users = jnp.asarray([0, 1, 2, 3])
    assert str(jax.make_jaxpr(tr.score)(params, SeqBatch(users, hist))).count("scan[") == 1
    full = score(params, SeqBatch(users, hist))
    np.testing.assert_array_equal(full, score(params, SeqBatch(users, hist)))
    perm = jnp.asarray([2, 0, 3, 1])
    np.testing.assert_allclose(
        score(params, SeqBatch(users[perm], hist[perm])), full[perm], rtol=1e-5, atol=1e-5
    )
    # Other companions (same batch shape, no recompilation): user 1's row is unchanged, and the
    # noise follows the user index (user 9 with user 1's history scores differently).
    mixed = score(params, SeqBatch(jnp.asarray([9, 7, 1, 8]), hist[jnp.asarray([1, 0, 1, 3])]))
    np.testing.assert_allclose(mixed[2], full[1], rtol=1e-5, atol=1e-5)
    assert not np.allclose(mixed[0], full[1])
    # the sampling seed chooses the noise
    reseeded = dr.dreamrec(d=D, steps=T, max_len=L, w=2.0, schedule="linear", sampling_seed=8)
    assert not np.allclose(jax.jit(reseeded.score)(params, SeqBatch(users, hist)), full)


def test_registry_and_validation():
    spec = models.get("dreamrec")
    rec = spec.build(max_epochs=1)
    assert spec.input == "sequences" and spec.examples == "prefix"
    assert rec.hparams["max_len"] == 10 and rec.hparams["sampling_seed"] == 0
    assert rec.hparams["steps"] == 500 and rec.hparams["d"] == 64 and rec.hparams["w"] == 2.0
    for bad in (
        {"schedule": "quadratic"},
        {"d": 7},
        {"p_uncond": 1.0},
        {"w": -1.0},
        {"diffuser": "res"},
        {"steps": 0},
        {"sampling_seed": -1},
        {"schedule": "linear", "beta_start": 0.5, "beta_end": 0.1},
    ):
        with pytest.raises(ConfigError):
            spec.build(**bad)
    params = random_params()
    with pytest.raises(ConfigError, match="max_len"):
        dr.guidance(params, jnp.full((2, L + 1), N_ITEMS, jnp.int32))


def test_learns_more_than_popularity_on_synthetic_sequences():
    # DreamRec beats a popularity ranking on NDCG@10 here, not on HR@10: with the released
    # settings (8 epochs, w in 0..8, mlp1/mlp2, exp/linear schedules) its valid HR@10 stayed at
    # 0.13-0.15 against popularity's 0.171 while NDCG@10 reached 0.10 against 0.081. The
    # settings below (3 epochs at lr 3e-3) measured NDCG@10 0.094-0.102 over sampling seeds
    # 0-3; at lr 2e-3 it was 0.088-0.096, too close to the 1.1 x popularity bar for one draw.
    seq = load_dataset("synthetic-sequences").extras["sequences"]
    spec = models.get("dreamrec")
    hparams = spec.hparams(
        steps=20, lr=3e-3, batch_size=512, max_epochs=3, eval_every=3, patience=None
    )
    data = SeqFitData.from_split(seq)
    result = run_plan(spec.train_plan(hparams, data), data, jax.random.key(0))
    evaluator = SequenceEvaluator.from_fit_data(data, 10, ks=(10,))
    counts = jnp.asarray(np.bincount(seq.train.items, minlength=seq.n_items), jnp.float32)
    popular = evaluator.evaluate(
        lambda c, b: jnp.broadcast_to(c, (b.history.shape[0], c.shape[0])), counts, ("valid",)
    )["valid"].summary
    got = result.best_metrics
    assert got["NDCG@10"] > 1.1 * popular["NDCG@10"], (got, popular)
    assert got["HitRate@10"] > 5 * 10 / seq.n_items, got  # far above a random ranking
