"""ADRec: loss pieces, PCGrad and the samplers against numpy float64; stages; learning."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from np_transformer import np64, np_encoder, np_gelu_tanh, np_layer_norm, np_linear

from diffrec_jax import models, seeds
from diffrec_jax.data.datasets import load_dataset
from diffrec_jax.diffusion import gaussian as gd
from diffrec_jax.diffusion.gaussian import diffusion_arrays
from diffrec_jax.diffusion.schedules import get_schedule
from diffrec_jax.errors import ConfigError
from diffrec_jax.evaluation import SequenceEvaluator
from diffrec_jax.models import adrec as A
from diffrec_jax.protocol import SeqBatch, SeqFitData, StepInfo

N_ITEMS, B, L = 13, 4, 6
# No dropout: the numpy reference is deterministic given (t, noise). Two denoiser blocks so the
# sampler's key/value cache spans several blocks.
TINY = A.ADRecConfig(
    d=8,
    n_heads=2,
    encoder_blocks=1,
    denoiser_blocks=2,
    emb_dropout=0.0,
    dropout=0.0,
    lam=0.3,
    steps=5,
    pack_ratio=0.0,  # packed rows are checked against these in test_packing.py
)


def _jit(fn, **kwargs):
    """jax.jit with XLA's backend optimisations off: these programs only check numbers, and
    compile several times faster on the shared CPU."""
    return jax.jit(fn, compiler_options={"xla_backend_optimization_level": 0}, **kwargs)


def _batch(seed=0, weights=None):
    """Left-padded histories with different lengths, targets shifted by one."""
    rng = np.random.default_rng(seed)
    hist = rng.integers(0, N_ITEMS, (B, L)).astype(np.int32)
    for row, n_pad in enumerate([0, 2, 4, 5][:B]):
        hist[row, :n_pad] = N_ITEMS
    nxt = rng.integers(0, N_ITEMS, (B, 1)).astype(np.int32)
    targets = np.concatenate([hist[:, 1:], nxt], axis=1)
    targets[hist == N_ITEMS] = N_ITEMS
    w = np.ones(B, np.float32) if weights is None else np.asarray(weights, np.float32)
    return SeqBatch(jnp.arange(B, dtype=jnp.int32) + 7, jnp.asarray(hist), jnp.asarray(targets), w)


def _params(cfg=TINY, seed=0):
    p = A.init_params(jax.random.key(seed), N_ITEMS, cfg)
    # non-trivial LayerNorms, as after training
    rng = np.random.default_rng(seed + 1)
    p["hist_norm"] = {
        "scale": jnp.asarray(1 + 0.3 * rng.standard_normal(cfg.d), jnp.float32),
        "bias": jnp.asarray(0.3 * rng.standard_normal(cfg.d), jnp.float32),
    }
    return p


# --- numpy float64 transcription of the original's forward pass --------------------------------


def np_time_emb(p, t, cfg):
    half = cfg.d // 2
    freqs = np.exp(-math.log(10000.0) * np.arange(half) / half)
    args = (t * 1000.0 / cfg.steps)[..., None] * freqs
    emb = np.concatenate([np.cos(args), np.sin(args)], axis=-1)
    h = np_linear(p["time_embed"][0], emb)
    return np_linear(p["time_embed"][1], h / (1 + np.exp(-h)))


def np_encode(p, hist, cfg):
    valid = hist != N_ITEMS
    h = np_layer_norm(p["hist_norm"], p["item_emb"][hist], 1e-12)
    return np_encoder(p["encoder"], h, valid, cfg.n_heads, True, False, np_gelu_tanh, 1e-12)


def np_denoise(p, rep, x_t, t, valid, cfg):
    h = rep + cfg.lam * (x_t + np_time_emb(p, t, cfg))
    return np_encoder(p["denoiser"], h, valid, cfg.n_heads, True, False, np_gelu_tanh, 1e-12)


def np_losses(p, batch, t, noise, cfg):
    """(ce, mse) of the original's ADRec forward in float64."""
    hist, tg, w = (np.asarray(a) for a in (batch.history, batch.targets, batch.weights))
    valid = tg != N_ITEMS
    a = diffusion_arrays(get_schedule(cfg.schedule, cfg.steps))
    x0 = p["item_emb"][tg]
    x_t = np.sqrt(a["alphas_cumprod"])[t][..., None] * x0
    x_t = x_t + np.sqrt(1 - a["alphas_cumprod"])[t][..., None] * noise
    x_t = np.where(valid[..., None], x_t, x0)
    out = np_denoise(p, np_encode(p, hist, cfg), x_t, t, hist != N_ITEMS, cfg)
    logits = out @ p["item_emb"][:N_ITEMS].T
    ces = []
    for i in range(B):
        for j in range(L):
            if valid[i, j] and w[i] > 0:
                row = logits[i, j]
                ces.append(np.log(np.exp(row - row.max()).sum()) + row.max() - row[tg[i, j]])
    ce = float(np.mean(ces))
    per_seq = [
        ((out[i] - x0[i]) ** 2).mean(-1)[valid[i]].sum() / valid[i].sum()
        for i in range(B)
        if w[i] > 0
    ]
    return ce, float(np.mean(per_seq))


def np_sample(p, batch, cfg, start, z):
    """T ancestral steps at the last position, the prefix fed its clean targets at t = 0;
    `start` [B, d] is x_T and z[i] [B, d] the noise of step i."""
    hist = np.asarray(batch.history)
    valid = hist != N_ITEMS
    a = diffusion_arrays(get_schedule(cfg.schedule, cfg.steps))
    log_var = np.log(np.r_[a["posterior_variance"][1], a["betas"][1:]])
    rep = np_encode(p, hist, cfg)
    prefix = p["item_emb"][hist[:, 1:]]
    x = start
    for i in range(cfg.steps - 1, -1, -1):
        x_all = np.concatenate([prefix, x[:, None]], axis=1)
        t_all = np.zeros(hist.shape, np.int64)
        t_all[:, -1] = i
        x0 = np_denoise(p, rep, x_all, t_all, valid, cfg)[:, -1]
        mean = a["posterior_mean_coef1"][i] * x0 + a["posterior_mean_coef2"][i] * x
        x = mean + (i > 0) * np.exp(0.5 * log_var[i]) * z[i]
    return x @ p["item_emb"][:N_ITEMS].T


# --- schedule, timesteps ------------------------------------------------------------------------


def test_trunc_lin_schedule_and_reverse_variance():
    diff = A.make_diffusion(A.ADRecConfig())
    betas = np.asarray(diff.betas, np.float64)
    assert betas.shape == (32,) and diff.mean_type == "x0"
    np.testing.assert_allclose(betas[[0, -1]], [0.013125, 0.635], rtol=1e-6)
    a = diffusion_arrays(get_schedule("trunc_lin", 32))
    # the original's reverse variance: gaussian's "large" one
    want = np.log(np.r_[a["posterior_variance"][1], a["betas"][1:]])
    np.testing.assert_allclose(diff.large_log_variance, want, rtol=1e-6)
    np.testing.assert_allclose(diff.posterior_mean_coef1[0], 1.0, rtol=1e-6)  # t = 0: x0_hat
    np.testing.assert_allclose(diff.posterior_mean_coef2[0], 0.0, atol=1e-7)


def test_token_level_timesteps_and_padding():
    batch = _batch()
    valid = batch.targets != N_ITEMS
    t, noise = A.diffusion_draws(jax.random.key(3), valid, 8, 32)
    t, valid_np = np.asarray(t), np.asarray(valid)
    assert t.dtype == np.int32 and noise.shape == (B, L, 8)
    assert (t[~valid_np] == 0).all() and t.min() >= 0 and t.max() < 32
    assert len(set(t[0].tolist())) > 2  # independent per token, not one t per sequence
    # many draws: every real token uniform on 0..T-1 independently of its row
    big = jnp.ones((400, 50), bool).at[:, :10].set(False)
    tt = np.asarray(A.diffusion_draws(jax.random.key(4), big, 2, 32)[0])
    assert (tt[:, :10] == 0).all()
    counts = np.bincount(tt[:, 10:].ravel(), minlength=32)
    assert counts.min() > 0.8 * counts.mean() and counts.max() < 1.2 * counts.mean()
    row_means = tt[:, 10:].mean(1)
    assert row_means.std() > 1.0  # tokens of a row are not one shared t (that gives ~9)
    # the shared q_sample with per-token timesteps: each token's own Gaussian marginal
    diff = A.make_diffusion(TINY)
    x0 = jnp.asarray(np.random.default_rng(0).standard_normal((B, L, 8)), jnp.float32)
    t_tok = jnp.where(valid, jnp.arange(L)[None, :] % TINY.steps, 0)
    x_t = np.asarray(gd.q_sample(diff, x0, t_tok, noise))
    ab = diffusion_arrays(get_schedule("trunc_lin", 5))["alphas_cumprod"][np.asarray(t_tok)]
    want = np.sqrt(ab)[..., None] * np.asarray(x0) + np.sqrt(1 - ab)[..., None] * np.asarray(noise)
    np.testing.assert_allclose(x_t, want, rtol=1e-5, atol=1e-6)


# --- losses -------------------------------------------------------------------------------------


@pytest.mark.parametrize("weights", [None, [1.0, 1.0, 0.0, 1.0]])
def test_loss_terms_against_numpy(weights):
    p = _params()
    batch = _batch(1, weights)
    key = jax.random.key(5)
    terms = _jit(A.loss_terms, static_argnames="cfg")
    ce, mse, aux = terms(p, batch, key, cfg=TINY, diff=A.make_diffusion(TINY))
    # loss_terms draws (t, noise) from the first half of its key
    draw_key = jax.random.split(key)[0]
    t, noise = A.diffusion_draws(draw_key, batch.targets != N_ITEMS, TINY.d, TINY.steps)
    want_ce, want_mse = np_losses(np64(p), batch, np.asarray(t), np64(noise), TINY)
    np.testing.assert_allclose([float(ce), float(mse)], [want_ce, want_mse], rtol=2e-5)
    assert 0 <= float(aux["t_mean"]) < TINY.steps


def test_pcgrad_combine_against_numpy():
    rng = np.random.default_rng(0)

    def np_pcgrad(g1, g2):
        out = []
        for gi, gj in ((g1, g2), (g2, g1)):
            gi = gi.copy()
            if gi @ gj < 0:
                gi -= (gi @ gj) / (gj @ gj) * gj
            out.append(gi)
        return (out[0] + out[1]) / 2

    for conflict in (True, False):
        g1 = rng.standard_normal(7)
        g2 = rng.standard_normal(7)
        if (g1 @ g2 < 0) != conflict:
            g2 = -g2
        tree = lambda g: {"a": jnp.asarray(g[:3], jnp.float32), "b": [jnp.asarray(g[3:])]}
        got = A.pcgrad_combine(tree(g1), tree(g2))
        got = np.concatenate([np.asarray(got["a"]), np.asarray(got["b"][0])])
        np.testing.assert_allclose(got, np_pcgrad(g1, g2), rtol=1e-5, atol=1e-6)
        if not conflict:
            np.testing.assert_allclose(got, (g1 + g2) / 2, rtol=1e-5, atol=1e-6)
        else:  # the projected parts no longer conflict with the other original gradient
            assert not np.allclose(got, (g1 + g2) / 2)


def _flat(tree):
    return np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(tree)])


def test_loop_gradient_is_mean_or_pcgrad_of_the_two_gradients():
    """The gradient the shared loop takes of Trainable.loss equals the mean (pcgrad off) or
    numpy PCGrad (on) of the separately computed gradients of ce and loss_scale * mse."""
    cfg = TINY._replace(denoiser_blocks=1)  # smaller programs: four compilations here
    diff = A.make_diffusion(cfg)
    p = _params(cfg, seed=2)
    batch = _batch(2, [1.0, 1.0, 1.0, 0.0])
    key = jax.random.key(7)
    info = StepInfo(jnp.int32(0), jnp.int32(0))

    @_jit
    def separate(params):
        g_ce = jax.grad(lambda q: A.loss_terms(q, batch, key, cfg, diff)[0])(params)
        g_mse = jax.grad(lambda q: A.loss_terms(q, batch, key, cfg, diff)[1])(params)
        return g_ce, g_mse

    g_ce, g_mse = (_flat(g) for g in separate(p))
    assert g_ce @ g_mse > 0  # aligned at initialisation (cosine ~0.3); scale -0.7 conflicts

    def np_pcgrad(g1, g2):
        d = g1 @ g2
        if d >= 0:
            return (g1 + g2) / 2
        return ((g1 - d / (g2 @ g2) * g2) + (g2 - d / (g1 @ g1) * g1)) / 2

    # (pcgrad on, aligned) is the mean: covered by test_pcgrad_combine_against_numpy
    for pcgrad, scale in ((False, 0.7), (True, -0.7)):
        model = A.adrec_trainable(cfg._replace(pcgrad=pcgrad, loss_scale=scale))
        grad_fn = _jit(jax.value_and_grad(model.loss, has_aux=True))
        (value, (_, aux)), grads = grad_fn(p, (), batch, key, info)
        ce, mse = float(aux["ce"]), float(aux["mse"])
        np.testing.assert_allclose(float(value), 0.5 * (ce + scale * mse), rtol=1e-6)
        g2 = scale * g_mse
        if pcgrad:
            want = np_pcgrad(g_ce, g2)
            assert float(aux["conflict"]) == float(scale < 0)
        else:
            want = (g_ce + g2) / 2
        np.testing.assert_allclose(_flat(grads), want, rtol=2e-4, atol=2e-6)
        if pcgrad and scale < 0:  # the projection changed the direction
            assert not np.allclose(want, (g_ce + g2) / 2, rtol=1e-2)


# --- samplers -----------------------------------------------------------------------------------


@_jit
def sampler_noise(users):
    """The sampler's draws (seed TINY.sampling_seed): x_T [B, d] and the noise of step t,
    [T, B, d], from each user's key (gaussian.reverse_keys: start, then fold_in(steps, t))."""
    start, steps = gd.reverse_keys(seeds.sampling_keys(TINY.sampling_seed, users))
    z = jnp.stack([gd.normal(gd.step_key(steps, t), (B, TINY.d)) for t in range(TINY.steps)])
    return gd.normal(start, (B, TINY.d)), z


def test_samplers_agree_with_numpy_and_are_deterministic():
    p = _params(seed=3)
    batch = SeqBatch(_batch(3).users, _batch(3).history)
    full_fn = _jit(A.make_score(TINY, "full"))
    cached_fn = _jit(A.make_score(TINY, "cached"))
    full, cached = full_fn(p, batch), cached_fn(p, batch)
    assert full.shape == cached.shape == (B, N_ITEMS)
    np.testing.assert_allclose(cached, full, rtol=1e-5, atol=1e-5)
    start, z = (np64(a) for a in sampler_noise(batch.users))
    want = np_sample(np64(p), batch, TINY, start, z)
    np.testing.assert_allclose(full, want, rtol=1e-4, atol=1e-4)
    # deterministic, and independent of the batch composition (noise keyed by user)
    np.testing.assert_array_equal(cached_fn(p, batch), cached)
    perm = jnp.asarray([2, 0, 3, 1])
    shuffled = cached_fn(p, SeqBatch(batch.users[perm], batch.history[perm]))
    np.testing.assert_allclose(shuffled, np.asarray(cached)[np.asarray(perm)], rtol=1e-5, atol=1e-6)
    other = cached_fn(p, SeqBatch(batch.users + 100, batch.history))
    assert not np.allclose(other, cached)
    assert A.make_score(TINY) is A.make_score(TINY)  # one function object: compiled once
    # the sampling seed chooses the noise
    reseeded = _jit(A.make_score(TINY._replace(sampling_seed=1)))(p, batch)
    assert not np.allclose(reseeded, cached)


# --- stages -------------------------------------------------------------------------------------


def test_frozen_optimizer_never_moves_the_item_table():
    params = {"item_emb": jnp.ones((3, 2)), "denoiser": [{"w": jnp.ones((2, 2))}]}
    grads = jax.tree.map(jnp.ones_like, params)
    for frozen, moves in (((), True), (("item_emb",), False)):
        tx = A.make_optimizer(1e-2, 1e-5, decay_steps=4, frozen=frozen)
        state = tx.init(params)
        p = params
        for _ in range(3):
            updates, state = tx.update(grads, state, p)
            p = optax.apply_updates(p, updates)
        assert (not np.array_equal(p["item_emb"], params["item_emb"])) == moves
        assert not np.array_equal(p["denoiser"][0]["w"], params["denoiser"][0]["w"])


def test_registry_and_hparam_errors():
    spec = models.get("adrec")
    model = spec.build()
    assert spec.kind == "staged" and spec.input == "sequences" and model.hparams["max_len"] == 50
    assert model.hparams["steps"] == 32 and model.hparams["lam"] == 0.001
    assert model.hparams["sampling_seed"] == 0
    # the score function is the cached sampler of the configuration (compiled once)
    assert model.score is A.make_score(A.config_from_hparams(model.hparams))
    assert spec.build(sampling_seed=3).score is not model.score
    with pytest.raises(ConfigError, match="no hyperparameter"):
        spec.build(bogus=1)
    with pytest.raises(ConfigError, match="sampler"):
        spec.build(sampler="fast")
    with pytest.raises(ConfigError, match="divisible"):
        spec.build(d=10, n_heads=4)
    with pytest.raises(ConfigError, match="freeze_epochs"):
        spec.build(freeze_epochs=-1)
    with pytest.raises(ConfigError, match="sampling_seed"):
        spec.build(sampling_seed=-1)
    with pytest.raises(ConfigError, match="select_metric"):
        spec.build(select_metric="AUC")
    with pytest.raises(ConfigError, match="no hyperparameter"):
        A.fit_stages({"bogus": 1}, None, jax.random.key(0))


def test_learns_on_synthetic_sequences():
    """Three tiny stages through the shared loop: stage 2 keeps the pretrained table, and the
    result beats the popularity ranking on valid HR@10."""
    split = load_dataset("synthetic-sequences").extras["sequences"]
    hp = dict(
        d=32,
        n_heads=2,
        encoder_blocks=1,
        denoiser_blocks=1,
        dropout=0.0,
        emb_dropout=0.0,
        max_len=20,
        batch_size=128,
        lr=5e-3,
        pretrain_epochs=4,  # < eval_every: stage 1 runs unvalidated (one compilation less)
        freeze_epochs=1,
        max_epochs=5,
        eval_every=5,
    )
    result = A.fit_stages(hp, SeqFitData.from_split(split), jax.random.key(0))
    assert len(result.pretrain.history) == 4 and result.full.best_epoch == 5
    assert len(result.frozen.history) == 1 and result.frozen.best_epoch is None
    table = np.asarray(result.pretrain.params["item_emb"])
    np.testing.assert_array_equal(result.frozen.params["item_emb"], table)  # frozen in stage 2
    moved = jax.tree.map(
        lambda a, b: not np.allclose(a, b),
        result.frozen.params["denoiser"],
        result.full.params["denoiser"],
    )
    assert all(jax.tree.leaves(moved))
    assert not np.allclose(result.params["item_emb"], table)  # unfrozen in stage 3

    record = A.stages_record(result)  # what results files store (fit_with_record)
    stages = [h["stage"] for h in record["history"]]
    assert stages == ["pretrain"] * 4 + ["frozen"] + ["full"] * 5 and record["epochs"] == 10
    assert record["best_epoch"] == 5 and record["best_valid"] == result.full.best_metrics
    assert record["stages"]["frozen"]["best_epoch"] is None
    assert record["stages"]["pretrain"]["epochs"] == 4 and "history" not in record["stages"]["full"]

    # the ks (hence top-k size) of fit's validation: its compiled scoring step is reused
    evaluator = SequenceEvaluator.from_split(split, 20, ks=(5, 10, 20))
    counts = jnp.asarray(np.bincount(split.train.items, minlength=split.n_items), jnp.float32)

    def popularity(c, batch):
        return jnp.broadcast_to(c, (batch.history.shape[0], c.shape[0]))

    pop = evaluator.evaluate(popularity, counts, parts=("valid",))["valid"].summary
    model = models.get("adrec").build(**hp)
    got = evaluator.evaluate(model.score, result.params, parts=("valid",))["valid"].summary
    # measured: 0.287 vs 0.171
    assert got["HitRate@10"] > pop["HitRate@10"] + 0.05, (got["HitRate@10"], pop["HitRate@10"])


def test_registry_fit_applies_overrides_to_every_stage():
    """The registry's staged fit (adrec.fit_with_record): every stage's TrainConfig takes the
    overrides (here the study's selection metric and cutoffs), and the record says so."""
    split = load_dataset("synthetic-sequences").extras["sequences"]
    spec = models.get("adrec")
    hp = spec.hparams(
        d=8,
        n_heads=2,
        encoder_blocks=1,
        denoiser_blocks=1,
        steps=4,
        max_len=10,
        batch_size=256,
        pretrain_epochs=1,
        freeze_epochs=0,
        max_epochs=1,
        eval_every=1,
    )
    overrides = {"select_metric": "HitRate@10", "ks": (10,)}
    params, record = spec.fit_with_record(
        hp, SeqFitData.from_split(split), jax.random.key(0), overrides
    )
    for stage in ("pretrain", "full"):
        metrics = record["stages"][stage]["best_valid"]
        assert "HitRate@10" in metrics and all(k.endswith("@10") for k in metrics), metrics
    assert record["stages"]["frozen"] is None and record["epochs"] == 2
    scores = spec.build(**hp).score(params, SeqBatch(jnp.arange(2), jnp.full((2, 10), 0)))
    assert scores.shape == (2, split.n_items) and np.isfinite(np.asarray(scores)).all()
