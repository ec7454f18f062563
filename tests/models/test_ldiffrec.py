"""L-DiffRec / LT-DiffRec: layout, loss, scores and schedules against numpy float64
transcriptions of the original code; optimiser partition; compilation; training smoke tests."""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffrec_jax import models
from diffrec_jax.data.interactions import InteractionMatrix
from diffrec_jax.data.split import Split
from diffrec_jax.diffusion import gaussian as gd
from diffrec_jax.diffusion import schedules
from diffrec_jax.errors import ConfigError
from diffrec_jax.experiment import RunConfig, run
from diffrec_jax.models import ldiffrec as ld
from diffrec_jax.models import tdiffrec
from diffrec_jax.nn import kmeans as km
from diffrec_jax.protocol import FitData, StepInfo, UserBatch, exported
from diffrec_jax.train import TrainConfig, TrainPlan, train
from diffrec_jax.train.loop import TrainState, make_train_step

N_ITEMS, N_GROUPS = 30, 3
SMALL = dict(
    n_cate=3,
    latent_size=12,
    mlp_dims=(8,),
    emb_size=4,
    steps=5,
    noise_scale=0.1,
    noise_min=0.01,
    noise_max=0.2,
)


def _item_emb(seed=0, n_items=N_ITEMS, groups=N_GROUPS, d=4):
    """Embeddings of `groups` well separated item groups (item i in group i % groups)."""
    rng = np.random.default_rng(seed)
    centres = 10.0 * rng.normal(size=(groups, d))
    return (centres[np.arange(n_items) % groups] + rng.normal(size=(n_items, d))).astype(np.float32)


def _rows(seed, users=10, items=N_ITEMS, density=0.3):
    rng = np.random.default_rng(seed)
    return (rng.random((users, items)) < density).astype(np.float32)


def _f64(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


# --- numpy float64 transcription of the original (Autoencoder.py, DNN.py, main.py) ---


def np_timestep_embedding(t, dim, max_period=10000):
    half = dim // 2
    freqs = np.exp(-math.log(max_period) * np.arange(half, dtype=np.float64) / half)
    args = np.asarray(t, np.float64)[:, None] * freqs[None]
    emb = np.concatenate([np.cos(args), np.sin(args)], axis=-1)
    if dim % 2:
        emb = np.concatenate([emb, np.zeros_like(emb[:, :1])], axis=-1)
    return emb


def np_dnn(p, x, t, keep=None, rate=0.5):
    emb = np_timestep_embedding(t, p["time"]["w"].shape[0]) @ p["time"]["w"] + p["time"]["b"]
    if keep is not None:
        x = np.where(keep, x / (1 - rate), 0.0)
    h = np.concatenate([x, emb], axis=-1)
    for i, layer in enumerate(p["mlp"]):
        h = h @ layer["w"] + layer["b"]
        if i < len(p["mlp"]) - 1:
            h = np.tanh(h)
    return h


def np_encode(p, x_cate, latent_sizes):
    mus, logvars, start = [], [], 0
    for layer, l_g in zip(p["encoder"], latent_sizes, strict=True):
        n_g = layer["w"].shape[0]
        h = np.tanh(x_cate[:, start : start + n_g] @ layer["w"] + layer["b"])
        mus.append(h[:, :l_g])
        logvars.append(h[:, l_g:])
        start += n_g
    return np.concatenate(mus, -1), np.concatenate(logvars, -1)


def np_arrays(betas):
    abar = np.cumprod(1 - betas)
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    return {
        "betas": betas,
        "abar": abar,
        "abar_prev": abar_prev,
        "snr": abar / (1 - abar),
        "coef1": betas * np.sqrt(abar_prev) / (1 - abar),
        "coef2": (1 - abar_prev) * np.sqrt(1 - betas) / (1 - abar),
    }


def np_loss(params, rows, noise, step, epoch, groups, betas, hp):
    """One training step's loss as main.py computes it (the real rows only)."""
    p = _f64(params)
    n = {k: np.asarray(v) for k, v in noise._asdict().items()}
    a = np_arrays(betas)
    rate_in = hp.get("input_dropout", 0.1)
    x = np.where(n["input_keep"], np.asarray(rows, np.float64) / (1 - rate_in), 0.0)
    x_cate = x[:, groups.perm]  # Encode: dropout, then the batch in category order
    mu, logvar = np_encode(p, x_cate, groups.latent_sizes)
    z0 = mu + np.exp(0.5 * logvar) * n["reparam"] if hp.get("reparam", True) else mu
    kl = -0.5 * np.mean(np.sum(1 + logvar - mu**2 - np.exp(logvar), axis=1))
    t, eps = n["t"], n["diffusion"].astype(np.float64)
    x_t = np.sqrt(a["abar"][t])[:, None] * z0 + np.sqrt(1 - a["abar"][t])[:, None] * eps
    out = np_dnn(p["denoiser"], x_t, t, n["denoiser_keep"], hp.get("dropout", 0.5))
    mean_type = hp.get("mean_type", "x0")
    target = z0 if mean_type == "x0" else eps
    mse = np.mean((target - out) ** 2, axis=1)
    x0_from_eps = (
        np.sqrt(1 / a["abar"][t])[:, None] * x_t - np.sqrt(1 / a["abar"][t] - 1)[:, None] * out
    )
    if hp.get("reweight", True):
        if mean_type == "x0":
            weight = np.where(t == 0, 1.0, a["snr"][t - 1] - a["snr"][t])
            loss = mse
        else:
            with np.errstate(divide="ignore"):  # t = 0 (abar_prev = 1) is replaced below
                weight = (1 - a["abar"][t]) / ((1 - a["abar_prev"][t]) ** 2 * (1 - betas[t]))
            weight = np.where(t == 0, 1.0, weight)
            likelihood = np.mean((z0 - x0_from_eps) ** 2 / 2.0, axis=1)
            loss = np.where(t == 0, likelihood, mse)
        terms = weight * loss
    else:
        terms = mse
    elbo = np.mean(terms / n["pt"])
    z0_hat = out if mean_type == "x0" else x0_from_eps
    logits = z0_hat @ p["decoder"]["w"] + p["decoder"]["b"]
    log_softmax = (
        logits
        - np.log(np.sum(np.exp(logits - logits.max(1, keepdims=True)), 1))[:, None]
        - logits.max(1, keepdims=True)
    )
    recon = -np.mean(np.sum(log_softmax * x_cate, -1))
    lamda = max((1.0 - epoch / 500) * hp.get("lamda", 0.03), 0.005)
    anneal = min(0.3, 1.0 * step / 200)
    vae = recon + anneal * kl
    total = lamda * elbo + vae if hp.get("reweight", True) else elbo + lamda * vae
    return total, terms


def _noise(seed, history_full, batch, latent, steps):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, steps, batch).astype(np.int32)
    t[0] = 0  # always exercise the t = 0 branch
    pt = rng.uniform(0.5, 2.0, batch) if history_full else np.ones(batch)
    return ld.TrainNoise(
        input_keep=jnp.asarray(rng.random((batch, N_ITEMS)) >= 0.1),
        reparam=jnp.asarray(rng.normal(size=(batch, latent)), jnp.float32),
        t=jnp.asarray(t),
        pt=jnp.asarray(pt, jnp.float32),
        diffusion=jnp.asarray(rng.normal(size=(batch, latent)), jnp.float32),
        denoiser_keep=jnp.asarray(rng.random((batch, latent)) >= 0.5),
    )


def _model(**overrides):
    return ld.ldiffrec_model(_item_emb(), **{**SMALL, **overrides})


def _betas(**overrides):
    hp = {**SMALL, **overrides}
    return schedules.get_schedule(
        "linear-var",
        hp["steps"],
        noise_scale=hp["noise_scale"],
        noise_min=hp["noise_min"],
        noise_max=hp["noise_max"],
    )


# --- layout ---


@pytest.mark.parametrize(
    ("sizes", "latent"),
    [((1850, 960), 300), ((5, 1000, 995), 300), ((7, 7, 7, 9), 10), ((3,), 300), ((2, 2), 1)],
)
def test_latent_sizes_follow_the_original_formula(sizes, latent):
    if len(sizes) > 1 and latent < len(sizes):
        with pytest.raises(ConfigError, match="latent_size=1"):
            ld.latent_sizes(sizes, latent)
        return
    n_item = sum(sizes)
    expected, decode_dim = [], []
    for i, length in enumerate(sizes):  # Autoencoder.__init__, in_dims = [latent]
        if i == len(sizes) - 1:
            dims = latent - int(np.array(decode_dim).sum())
        else:
            dims = int(length / n_item * latent)
            dims = dims if dims != 0 else 1
        decode_dim.append(dims)
        expected.append(dims)
    assert ld.latent_sizes(sizes, latent) == tuple(expected)
    assert sum(expected) == latent


def test_ml1m_released_layout():
    # 1850 / 2810 * 300 = 197.5 -> 197; the last group takes 103.
    assert ld.latent_sizes((1850, 960), 300) == (197, 103)


def test_item_groups_are_the_kmeans_clusters_in_order():
    emb = _item_emb()
    groups = ld.item_groups(emb, 3, 12, seed=1)
    labels = km.kmeans(emb, 3, seed=1).labels
    np.testing.assert_array_equal(np.sort(groups.perm), np.arange(N_ITEMS))
    start = 0
    for g, size in enumerate(groups.sizes):
        members = groups.perm[start : start + size]
        np.testing.assert_array_equal(members, np.flatnonzero(labels == g))  # ascending
        start += size
    np.testing.assert_array_equal(groups.perm[groups.inverse], np.arange(N_ITEMS))
    assert sorted(groups.sizes) == [10, 10, 10]  # the three planted groups
    one = ld.item_groups(emb, 1, 12)
    np.testing.assert_array_equal(one.perm, np.arange(N_ITEMS))
    assert one.sizes == (N_ITEMS,) and one.latent_sizes == (12,)


def test_parameter_shapes_and_initialisation():
    model = _model()
    params, history = model.trainable.init(jax.random.key(0), N_ITEMS)
    g = model.groups
    assert [layer["w"].shape for layer in params["encoder"]] == [
        (n_g, 2 * l_g) for n_g, l_g in zip(g.sizes, g.latent_sizes, strict=True)
    ]
    assert params["decoder"]["w"].shape == (12, N_ITEMS)
    assert [layer["w"].shape for layer in params["denoiser"]["mlp"]] == [(16, 8), (8, 12)]
    assert params["denoiser"]["time"]["w"].shape == (4, 4)
    for leaf_path, leaf in jax.tree_util.tree_leaves_with_path(params):
        if leaf_path[-1].key == "b":
            assert not np.any(np.asarray(leaf)), leaf_path  # xavier_normal_initialization: 0
    assert history.losses.shape == (5, gd.HISTORY_LEN)
    # Xavier normal: every weight is N(0, 2 / (fan_in + fan_out)); pooled over the layers.
    weights = [np.asarray(w) for w in jax.tree.leaves(params) if w.ndim == 2]
    pooled = np.concatenate([(w / math.sqrt(2 / sum(w.shape))).ravel() for w in weights])
    assert pooled.size > 800 and abs(pooled.std() - 1) < 0.1 and abs(pooled.mean()) < 0.1


# --- loss and scores ---


@pytest.mark.parametrize(
    ("mean_type", "reweight", "reparam", "history_full", "step", "epoch"),
    [
        ("x0", True, True, False, 0, 0),
        ("x0", True, True, True, 150, 420),
        ("eps", True, True, True, 37, 3),
        ("x0", False, False, False, 500, 1000),
    ],
)
def test_loss_matches_numpy(mean_type, reweight, reparam, history_full, step, epoch):
    hp = dict(mean_type=mean_type, reweight=reweight, reparam=reparam)
    model = _model(**hp)
    params, history = model.trainable.init(jax.random.key(3), N_ITEMS)
    rows = _rows(5)
    noise = _noise(6, history_full, rows.shape[0], 12, 5)
    batch = UserBatch(jnp.arange(rows.shape[0], dtype=jnp.int32), jnp.asarray(rows))
    info = StepInfo(jnp.int32(step), jnp.int32(epoch))
    value, (new_history, aux) = jax.jit(model.loss_terms)(params, history, batch, noise, info)
    expected, terms = np_loss(params, rows, noise, step, epoch, model.groups, _betas(), hp)
    np.testing.assert_allclose(float(value), expected, rtol=2e-5)
    np.testing.assert_allclose(float(aux["lambda"]), max((1 - epoch / 500) * 0.03, 0.005))
    np.testing.assert_allclose(float(aux["kl_weight"]), min(0.3, step / 200))
    # The history got one loss per example, at its timestep.
    t = np.asarray(noise.t)
    np.testing.assert_array_equal(np.asarray(new_history.counts), np.bincount(t, minlength=5))
    for s in range(5):
        np.testing.assert_allclose(
            np.asarray(new_history.losses)[s, : int((t == s).sum())], terms[t == s], rtol=2e-5
        )


def test_padded_rows_change_neither_loss_nor_gradient_nor_history():
    model = _model()
    params, history = model.trainable.init(jax.random.key(3), N_ITEMS)
    rows = _rows(8, users=10)
    noise = _noise(9, False, 10, 12, 5)
    info = StepInfo(jnp.int32(20), jnp.int32(2))
    real = 7
    short = UserBatch(jnp.arange(real, dtype=jnp.int32), jnp.asarray(rows[:real]))
    short_noise = jax.tree.map(lambda a: a[:real], noise)
    weights = jnp.asarray((np.arange(10) < real).astype(np.float32))
    padded = UserBatch(jnp.arange(10, dtype=jnp.int32), jnp.asarray(rows), weights)
    value_and_grad = jax.jit(jax.value_and_grad(model.loss_terms, has_aux=True))
    (v_short, (h_short, _)), g_short = value_and_grad(params, history, short, short_noise, info)
    (v_pad, (h_pad, _)), g_pad = value_and_grad(params, history, padded, noise, info)
    np.testing.assert_allclose(float(v_short), float(v_pad), rtol=1e-6)
    chex.assert_trees_all_close(g_short, g_pad, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(h_short, h_pad)


def test_loss_draws_the_documented_noise():
    model = _model()
    params, history = model.trainable.init(jax.random.key(0), N_ITEMS)
    rows = _rows(1)
    batch = UserBatch(jnp.arange(rows.shape[0], dtype=jnp.int32), jnp.asarray(rows))
    info = StepInfo(jnp.int32(5), jnp.int32(1))
    key = jax.random.key(42)

    @jax.jit
    def both(params, history, batch, key, info):
        noise = ld.draw_noise(key, history, batch.rows.shape, 12, 0.1, 0.5)
        return (
            model.trainable.loss(params, history, batch, key, info),
            model.loss_terms(params, history, batch, noise, info),
            noise.input_keep.mean(),
            noise.denoiser_keep.mean(),
        )

    from_key, from_noise, input_kept, denoiser_kept = both(params, history, batch, key, info)
    chex.assert_trees_all_equal(from_key, from_noise)
    assert 0.8 < float(input_kept) < 0.97 and 0.35 < float(denoiser_kept) < 0.65
    with pytest.raises(ConfigError, match="StepInfo"):
        model.trainable.loss(params, history, batch, key, None)


def test_score_encodes_denoises_decodes_and_unpermutes():
    model = _model()
    params, _ = model.trainable.init(jax.random.key(4), N_ITEMS)
    # Train-like parameters: perturb the zero biases so the test sees them.
    params = jax.tree.map(
        lambda a: a + 0.1 * jax.random.normal(jax.random.key(a.size), a.shape), params
    )
    rows = _rows(7)
    batch = UserBatch(jnp.arange(rows.shape[0], dtype=jnp.int32), jnp.asarray(rows))
    # The score takes the exported params: the trained ones and the item groups.
    scoring = exported(model.trainable, params)
    np.testing.assert_array_equal(scoring[ld.GROUPS]["perm"], model.groups.perm)
    np.testing.assert_array_equal(scoring[ld.GROUPS]["inverse"], model.groups.inverse)
    scores = np.asarray(jax.jit(model.trainable.score)(scoring, batch))
    p, a = _f64(params), np_arrays(_betas())
    mu, _ = np_encode(p, rows.astype(np.float64)[:, model.groups.perm], model.groups.latent_sizes)
    z = mu
    for t in range(4, -1, -1):  # p_sample with sampling_steps = 0: all T steps from mu
        tb = np.full(rows.shape[0], t)
        z0_hat = np_dnn(p["denoiser"], z, tb)
        z = a["coef1"][t] * z0_hat + a["coef2"][t] * z
    pred = z @ p["decoder"]["w"] + p["decoder"]["b"]  # category order
    expected = np.empty_like(pred)
    expected[:, model.groups.perm] = pred  # category_map[mapped index] = item
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-5)


# --- schedules and optimiser ---


@pytest.mark.parametrize(
    ("value", "cap", "steps"),
    [(0, 0.3, 200), (50, 0.3, 200), (60, 0.3, 200), (999, 0.3, 200), (7, 0.3, 0)],
)
def test_kl_anneal(value, cap, steps):
    expected = min(cap, 1.0 * value / steps) if steps > 0 else cap  # main.py
    np.testing.assert_allclose(float(ld.kl_anneal(jnp.int32(value), cap, steps)), expected)


@pytest.mark.parametrize(
    ("epoch", "lamda", "cap", "steps"),
    [
        (0, 0.03, 0.005, 500),
        (100, 0.03, 0.005, 500),
        (416, 0.03, 0.005, 500),
        (417, 0.03, 0.005, 500),
        (900, 0.03, 0.005, 500),
        (3, 0.001, 0.005, 0),
        (3, 0.05, 0.005, 0),
    ],
)
def test_diffusion_weight(epoch, lamda, cap, steps):
    if steps > 0:  # main.py, update_count = epochs completed
        expected = max((1.0 - epoch / steps) * lamda, cap)
    else:
        expected = max(lamda, cap)
    got = float(ld.diffusion_weight(jnp.int32(epoch), lamda, cap, steps))
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_optimizer_gives_each_part_its_learning_rate_and_weight_decay():
    lr1, lr2, wd1 = 1e-2, 1e-4, 0.5
    model = _model(lr1=lr1, lr2=lr2, wd1=wd1, wd2=0.0)
    params, _ = model.trainable.init(jax.random.key(0), N_ITEMS)
    labels = ld.param_partition(params)
    assert set(jax.tree.leaves(labels["denoiser"])) == {"denoiser"}
    assert set(jax.tree.leaves({k: labels[k] for k in ("encoder", "decoder")})) == {"autoencoder"}
    rng = np.random.default_rng(0)
    grads = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape), jnp.float32), params)
    opt = model.trainable.optimizer()
    updates, _ = jax.jit(opt.update)(grads, opt.init(params), params)
    for part, lr, wd in (("encoder", lr1, wd1), ("decoder", lr1, wd1), ("denoiser", lr2, 0.0)):
        # First AdamW step (bias-corrected): -lr g / (|g| + eps) - lr wd p.
        expected = jax.tree.map(
            lambda g, p, lr=lr, wd=wd: (
                -lr * np.asarray(g) / (np.abs(np.asarray(g)) + 1e-8) - lr * wd * np.asarray(p)
            ),
            grads[part],
            params[part],
        )
        chex.assert_trees_all_close(updates[part], expected, rtol=1e-4, atol=1e-9)


def test_train_step_compiles_once_and_follows_the_schedules():
    model = _model()
    tx = model.trainable.optimizer()
    step_fn = jax.jit(chex.assert_max_traces(make_train_step(model.trainable, tx), n=1))
    rows = _rows(2, users=8)
    batch = UserBatch(jnp.arange(8, dtype=jnp.int32), jnp.asarray(rows), jnp.ones(8))

    def run_steps(seed):
        params, history = model.trainable.init(jax.random.key(0), N_ITEMS)
        state = TrainState(params, tx.init(params), history, jnp.zeros((), jnp.int32))
        auxes = []
        for epoch in range(3):
            for _ in range(2):
                state, (_, aux) = step_fn(state, batch, jax.random.key(seed), np.int32(epoch))
                auxes.append(jax.device_get(aux))
        return state, auxes

    state_a, aux_a = run_steps(0)
    state_b, _ = run_steps(0)  # a retrace would raise
    chex.assert_trees_all_equal(state_a.params, state_b.params)
    np.testing.assert_allclose([a["kl_weight"] for a in aux_a], [s / 200 for s in range(6)])
    np.testing.assert_allclose(
        [a["lambda"] for a in aux_a], [0.03 * (1 - e / 500) for e in (0, 0, 1, 1, 2, 2)]
    )


# --- training, recommenders, experiment ---


def _structured(seed=0, users=96):
    """Users who prefer one of the three planted item groups."""
    rng = np.random.default_rng(seed)
    pref = rng.integers(0, N_GROUPS, users)
    prob = np.where(np.arange(N_ITEMS)[None] % N_GROUPS == pref[:, None], 0.6, 0.03)
    return rng.random((users, N_ITEMS)) < prob


def _split(seed=0):
    x = _structured(seed)
    rng = np.random.default_rng(seed + 1)
    part = rng.choice(3, size=x.shape, p=[0.6, 0.2, 0.2])
    part[:, :] = np.where(x, part, -1)
    first = np.argmax(x, axis=1)
    part[np.arange(x.shape[0]), first] = 0  # every user has train items
    mats = {}
    for code, name in enumerate(("train", "valid", "test")):
        u, i = np.nonzero(part == code)
        mats[name] = InteractionMatrix.from_arrays(u, i, shape=x.shape, timestamps=u * 0.0 + i)
    return Split(mats["train"], mats["valid"], mats["test"], name="structured")


def test_smoke_training_learns_the_groups():
    split = _split()
    model = _model(lr1=3e-2, lr2=1e-2, mlp_dims=(16,))
    config = TrainConfig(batch_size=32, max_epochs=30, log_every=30)
    result = train(model.trainable, FitData(split.train), config, key=jax.random.key(0))
    recon = [r.aux["reconstruction"] for r in result.history]
    assert np.all(np.isfinite([r.loss for r in result.history]))
    assert recon[-1] < 0.9 * recon[0], recon
    # Each user's best unseen item lies in the item group the user prefers.
    rows = split.train.dense_rows(np.arange(split.n_users))
    batch = UserBatch(jnp.arange(split.n_users, dtype=jnp.int32), jnp.asarray(rows))
    scoring = exported(model.trainable, result.params)
    scores = np.asarray(jax.jit(model.trainable.score)(scoring, batch))
    own = _structured(0)
    pref = [np.bincount(np.flatnonzero(r) % N_GROUPS, minlength=N_GROUPS).argmax() for r in own]
    top = np.argmax(np.where(rows > 0, -np.inf, scores), axis=1)
    assert np.mean(top % N_GROUPS == np.asarray(pref)) > 0.8


def test_recommenders_registry_and_errors():
    spec = models.get("ldiffrec")
    assert "item_emb" not in spec.defaults and spec.defaults["n_cate"] == 2
    assert spec.side_data == ("item_emb",) and spec.kind == "trained"
    split = _split()
    # The item embeddings are side data, not a hyperparameter.
    with pytest.raises(ConfigError, match="no hyperparameter"):
        spec.build(item_emb=_item_emb())
    with pytest.raises(ConfigError, match="no hyperparameter"):
        spec.build(lr=1e-3, **SMALL)
    rec = spec.build(**SMALL)
    assert "item_emb" not in rec.hparams and rec.hparams["lr1"] == 1e-3
    with pytest.raises(ConfigError, match="item_emb"):  # fit without the side data
        rec.fit(FitData(split.train, split.valid), jax.random.key(0))
    with pytest.raises(ConfigError, match="item_emb"):
        spec.train_plan(rec.hparams, FitData(split.train, side={"item_emb": "item_emb.npy"}))
    plan = spec.train_plan(rec.hparams, FitData(split.train, side={"item_emb": _item_emb()}))
    assert isinstance(plan, TrainPlan)
    assert plan.config.batch_size == 400 and plan.config.patience == 3
    with pytest.raises(ConfigError, match="30 rows but the train matrix has 31 items"):
        plan.trainable.init(jax.random.key(0), 31)
    # The registry's score (from the hyperparameters alone) scores the exported params as the
    # Trainable's own score.
    params, _ = plan.trainable.init(jax.random.key(1), N_ITEMS)
    scoring = exported(plan.trainable, params)
    rows = split.train.dense_rows(np.arange(8))
    batch = UserBatch(jnp.arange(8, dtype=jnp.int32), jnp.asarray(rows))
    np.testing.assert_array_equal(rec.score(scoring, batch), plan.trainable.score(scoring, batch))
    lt_spec = models.get("ltdiffrec")
    lt = lt_spec.build(w_min=0.2, w_max=0.8, **SMALL)
    assert lt_spec.side_data == ("item_emb",)
    prepared = lt_spec.prepare(split, lt.hparams)
    expected = tdiffrec.time_weighted(split.train, 0.2, 0.8)
    np.testing.assert_array_equal(prepared.train.csr.data, expected.csr.data)
    assert set(np.unique(prepared.train.csr.data)) != {1.0}
    with pytest.raises(ConfigError, match="w_min"):
        lt_spec.build(w_min=0.9, w_max=0.8)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(lr1=0.0), "lr1=0.0"),
        (dict(wd2=-1.0), "wd2=-1.0"),
        (dict(n_cate=0), "n_cate=0"),
        (dict(n_cate=31), "n_clusters=31"),
        (dict(latent_size=2), "latent_size=2"),
        (dict(mlp_dims=()), "mlp_dims"),
        (dict(input_dropout=1.0), "input_dropout=1.0"),
        (dict(mean_type="v"), "mean_type='v'"),
        (dict(noise_scale=0.0), "noise_scale=0.0"),
        (dict(sampling_steps=6), "steps_from=6"),
        (dict(anneal_steps=1.5), "anneal_steps"),
        (dict(kmeans_init="kmeans||"), "kmeans||"),
    ],
)
def test_invalid_hyperparameters(kwargs, match):
    with pytest.raises(ConfigError, match=match.replace("(", r"\(").replace("|", r"\|")):
        _model(**kwargs)


def test_experiment_passes_the_dataset_item_embeddings(tmp_path):
    split = _split(3)
    for name in ("train", "valid", "test"):
        u, i = np.nonzero(getattr(split, name).csr.toarray())
        np.save(tmp_path / f"{name}_list.npy", np.stack([u, i], 1).astype(np.int64))
    hp = {**SMALL, "batch_size": 32, "max_epochs": 5, "eval_every": 5}
    config = RunConfig(
        models=("ldiffrec",),
        dataset=f"diffrec:{tmp_path}",
        hparams={"ldiffrec": {k: [v] for k, v in hp.items()}},
        output_dir=str(tmp_path / "out"),
    )
    with pytest.raises(ConfigError, match="item_emb"):  # no item_emb.npy in the folder
        run(config, progress=lambda _: None)
    np.save(tmp_path / "item_emb.npy", _item_emb())
    results, _ = run(config, progress=lambda _: None)
    (entry,) = results["runs"]
    assert entry["training"]["best_epoch"] == 5
    assert np.isfinite(entry["test"]["Recall@20"])
