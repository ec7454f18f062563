"""DiffRec model: denoiser, loss and scores against numpy float64 transcriptions."""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from diffrec_jax import models, train
from diffrec_jax.data.interactions import InteractionMatrix
from diffrec_jax.diffusion import gaussian as gd
from diffrec_jax.diffusion import schedules
from diffrec_jax.errors import ConfigError
from diffrec_jax.models.diffrec import (
    DEFAULTS,
    denoise,
    denoiser_sizes,
    diffrec,
    init_denoiser,
)
from diffrec_jax.nn import layers
from diffrec_jax.protocol import FitData, StepInfo, Trainable, UserBatch
from diffrec_jax.train import EarlyStopping, early_stopping_update, should_stop

INFO = StepInfo(jnp.int32(0), jnp.int32(0))


def _matrix(n_items: int) -> InteractionMatrix:
    """A small train matrix of 6 users over `n_items` items."""
    users = np.repeat(np.arange(6), 3)
    items = (np.arange(18) * 7) % n_items
    return InteractionMatrix.from_arrays(users, items, shape=(6, n_items))


# --- numpy float64 transcription of DNN.forward (eval mode) ---


def np_timestep_embedding(t, dim, max_period=10000):
    half = dim // 2
    freqs = np.exp(-math.log(max_period) * np.arange(half, dtype=np.float64) / half)
    args = np.asarray(t, np.float64)[:, None] * freqs[None]
    emb = np.concatenate([np.cos(args), np.sin(args)], axis=-1)
    if dim % 2:
        emb = np.concatenate([emb, np.zeros_like(emb[:, :1])], axis=-1)
    return emb


def np_denoise(params, x, t, norm=False):
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    emb_size = p["time"]["w"].shape[0]
    emb = np_timestep_embedding(t, emb_size) @ p["time"]["w"] + p["time"]["b"]
    x = np.asarray(x, np.float64)
    if norm:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    h = np.concatenate([x, emb], axis=-1)
    for i, layer in enumerate(p["mlp"]):
        h = h @ layer["w"] + layer["b"]
        if i < len(p["mlp"]) - 1:
            h = np.tanh(h)
    return h


def np_diffusion(betas):
    abar = np.cumprod(1 - betas)
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    return {
        "abar": abar,
        "coef1": betas * np.sqrt(abar_prev) / (1 - abar),
        "coef2": (1 - abar_prev) * np.sqrt(1 - betas) / (1 - abar),
        "snr": abar / (1 - abar),
    }


def _rows(seed, users=12, items=30, density=0.2):
    rng = np.random.default_rng(seed)
    return (rng.random((users, items)) < density).astype(np.float32)


# --- denoiser ---


@pytest.mark.parametrize(
    ("dims", "sizes"),
    [
        ((200, 600), [50 + 10, 600, 200, 600, 50]),
        ((1000,), [50 + 10, 1000, 50]),
        ((8, 16, 32), [50 + 10, 32, 16, 8, 16, 32, 50]),
    ],
)
def test_layer_layout(dims, sizes):
    assert denoiser_sizes(50, dims, 10) == sizes
    params = jax.eval_shape(lambda k: init_denoiser(k, 50, dims, 10), jax.random.key(0))
    assert params["time"]["w"].shape == (10, 10) and params["time"]["b"].shape == (10,)
    shapes = list(zip(sizes[:-1], sizes[1:], strict=True))
    assert [layer["w"].shape for layer in params["mlp"]] == shapes
    assert [layer["b"].shape for layer in params["mlp"]] == [(s,) for s in sizes[1:]]
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(params))


def test_init_statistics():
    params = init_denoiser(jax.random.key(1), 3000, (400,), 10)
    biases = np.concatenate([np.asarray(layer["b"]) for layer in params["mlp"]])
    for layer in params["mlp"]:
        w = np.asarray(layer["w"], np.float64)
        std = math.sqrt(2.0 / sum(w.shape))
        n = w.size
        assert abs(w.mean()) < 5 * std / math.sqrt(n)
        assert abs(w.std() / std - 1) < 5 * math.sqrt(1 / (2 * n))
    assert abs(biases.std() / 0.001 - 1) < 5 * math.sqrt(1 / (2 * biases.size))
    assert abs(biases.mean()) < 5 * 0.001 / math.sqrt(biases.size)
    # Different keys, different parameters; same key, same parameters.
    again = init_denoiser(jax.random.key(1), 3000, (400,), 10)
    chex.assert_trees_all_equal(params, again)
    other = init_denoiser(jax.random.key(2), 3000, (400,), 10)
    assert not np.allclose(other["mlp"][0]["w"], params["mlp"][0]["w"])


@pytest.mark.parametrize("emb_size", [10, 7])
def test_timestep_embedding(emb_size):
    t = jnp.array([0, 1, 5, 39, 999])
    got = layers.timestep_embedding(t, emb_size)
    assert got.shape == (5, emb_size)
    np.testing.assert_allclose(got, np_timestep_embedding(np.asarray(t), emb_size), atol=2e-4)
    if emb_size % 2:
        np.testing.assert_array_equal(got[:, -1], 0.0)


@pytest.mark.parametrize("norm", [False, True])
@pytest.mark.parametrize(("dims", "emb_size"), [((16, 24), 10), ((20,), 7)])
def test_denoiser_matches_numpy(dims, emb_size, norm):
    rng = np.random.default_rng(2)
    x = _rows(3)
    x[0] = 0.0  # an empty row (norm must not divide by zero)
    t = rng.integers(0, 40, x.shape[0])
    params = init_denoiser(jax.random.key(3), x.shape[1], dims, emb_size)

    @jax.jit
    def both(params, x, t):
        # train=True with dropout 0 must be the same function as eval mode.
        return (
            denoise(params, x, t, norm=norm),
            denoise(params, x, t, jax.random.key(0), train=True, norm=norm, dropout=0.0),
        )

    got, same = both(params, jnp.asarray(x), jnp.asarray(t))
    np.testing.assert_allclose(got, np_denoise(params, x, t, norm), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(same, got, rtol=1e-6, atol=1e-6)


def test_dropout_in_training_only():
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.random((200, 300)) + 0.5, jnp.float32)
    y = layers.dropout(jax.random.key(0), x, 0.5)
    zero = np.asarray(y) == 0
    assert abs(zero.mean() - 0.5) < 5 * math.sqrt(0.25 / zero.size)
    np.testing.assert_allclose(np.asarray(y)[~zero], 2 * np.asarray(x)[~zero], rtol=1e-6)
    # In the denoiser: the output with train=True equals the eval output on the dropped input.
    params = init_denoiser(jax.random.key(5), 300, (32,), 10)
    t = jnp.zeros(200, jnp.int32)
    key = jax.random.key(6)

    @jax.jit
    def outputs(params, x):
        return (
            denoise(params, x, t, key, train=True, dropout=0.5),
            denoise(params, layers.dropout(key, x, 0.5), t),
            denoise(params, x, t),
        )

    train_out, on_dropped, eval_out = outputs(params, x)
    np.testing.assert_allclose(train_out, on_dropped, rtol=1e-5, atol=1e-6)
    assert not np.allclose(train_out, eval_out)
    with pytest.raises(ConfigError, match="needs a key"):
        denoise(params, x, t, train=True)


def test_denoiser_vmap_and_jit():
    params = init_denoiser(jax.random.key(0), 30, (16,), 10)
    x = jnp.asarray(_rows(5).reshape(3, 4, 30))
    t = jnp.arange(12).reshape(3, 4)
    keys = jax.random.split(jax.random.key(1), 3)
    fn = jax.jit(jax.vmap(lambda x, t, k: denoise(params, x, t, k, train=True)))
    got = fn(x, t, keys)
    one = jax.jit(lambda x, t, k: denoise(params, x, t, k, train=True))
    for i in range(3):
        np.testing.assert_allclose(got[i], one(x[i], t[i], keys[i]), rtol=1e-5, atol=1e-6)


# --- the Trainable ---

SMALL = dict(dims=(16,), steps=5, noise_scale=0.1, noise_min=0.01, noise_max=0.2)


def test_factory_defaults_and_protocol():
    model = diffrec()
    assert isinstance(model, Trainable)
    assert DEFAULTS["dims"] == (200, 600) and DEFAULTS["steps"] == 40
    assert DEFAULTS["noise_schedule"] == "linear-var" and DEFAULTS["reverse"] == "faithful"
    params, history = jax.eval_shape(lambda k: model.init(k, 25), jax.random.key(0))
    assert [layer["w"].shape for layer in params["mlp"]] == [
        (35, 600),
        (600, 200),
        (200, 600),
        (600, 25),
    ]
    assert history.losses.shape == (40, 10) and history.counts.shape == (40,)
    opt_state = jax.eval_shape(model.optimizer().init, params)
    chex.assert_trees_all_equal_shapes(opt_state[0].mu, params)


def test_optimizer_is_adamw_with_the_given_weight_decay():
    params = {"w": jnp.array([1.0, -2.0])}
    grads = {"w": jnp.array([0.5, 0.5])}
    for wd in (0.0, 0.1):
        opt = diffrec(lr=0.01, weight_decay=wd).optimizer()
        updates, _ = opt.update(grads, opt.init(params), params)
        # First Adam step: -lr * g / (|g| + eps) - lr * wd * p (decoupled, as torch's AdamW).
        want = -0.01 * (0.5 / (0.5 + 1e-8)) - 0.01 * wd * np.array([1.0, -2.0])
        # (optax computes the bias corrections 1 - b^t in float32, torch in float64.)
        np.testing.assert_allclose(updates["w"], want, rtol=1e-4)


@pytest.mark.parametrize(
    ("mean_type", "history_state", "padded"),
    [
        ("x0", "empty", False),
        ("x0", "full", False),
        ("eps", "empty", False),
        ("eps", "full", False),
        ("x0", "full", True),
        ("eps", "empty", True),
    ],
)
def test_loss_matches_numpy(mean_type, history_state, padded):
    model = diffrec(dropout=0.0, mean_type=mean_type, **SMALL)
    x0 = _rows(6)
    # Padded: the last 4 rows pad the batch (weight 0), as the training loop does.
    real = np.arange(x0.shape[0]) < (8 if padded else x0.shape[0])
    weights = jnp.asarray(real, jnp.float32) if padded else None
    batch = UserBatch(jnp.arange(x0.shape[0], dtype=jnp.int32), jnp.asarray(x0), weights)
    params, history = model.init(jax.random.key(0), x0.shape[1])
    rng = np.random.default_rng(7)
    if history_state == "full":
        history = gd.LossHistory(
            jnp.asarray(rng.random((5, 10)), jnp.float32), jnp.full((5,), 10, jnp.int32)
        )
    key = jax.random.key(8)
    value, (new_history, aux) = jax.jit(model.loss)(params, history, batch, key, INFO)
    # The draws the loss makes (three keys: timesteps, noise, dropout).
    key_t, key_noise, _ = jax.random.split(key, 3)
    t, pt = gd.sample_timesteps(key_t, history, x0.shape[0], "importance")
    t, pt = np.asarray(t), np.asarray(pt, np.float64)
    if history_state == "empty":
        np.testing.assert_array_equal(pt, 1.0)
    else:
        losses = np.asarray(history.losses, np.float64)
        p = np.sqrt(np.mean(losses**2, axis=1))
        p = 0.999 * p / p.sum() + 0.001 / 5
        np.testing.assert_allclose(pt, p[t] * 5, rtol=1e-5)
    noise = np.asarray(jax.random.normal(key_noise, x0.shape), np.float64)
    betas = schedules.get_schedule(
        "linear-var", 5, noise_scale=0.1, noise_min=0.01, noise_max=0.2, beta_fixed=True
    )
    d = np_diffusion(betas)
    xt = np.sqrt(d["abar"][t])[:, None] * x0 + np.sqrt(1 - d["abar"][t])[:, None] * noise
    out = np_denoise(params, xt, t)
    if mean_type == "x0":
        mse = np.mean((x0 - out) ** 2, axis=1)
        w = np.where(t == 0, 1.0, d["snr"][np.maximum(t - 1, 0)] - d["snr"][t])
        per = w * mse
    else:
        abar, abar_prev = d["abar"][t], np.concatenate([[1.0], d["abar"][:-1]])[t]
        x0_hat = np.sqrt(1 / abar)[:, None] * xt - np.sqrt(1 / abar - 1)[:, None] * out
        with np.errstate(divide="ignore"):
            w = np.where(t == 0, 1.0, (1 - abar) / ((1 - abar_prev) ** 2 * (1 - betas[t])))
        per = w * np.where(
            t == 0, np.mean((x0 - x0_hat) ** 2 / 2, axis=1), np.mean((noise - out) ** 2, axis=1)
        )
    np.testing.assert_allclose(float(value), np.mean((per / pt)[real]), rtol=1e-4)
    np.testing.assert_allclose(float(aux["weighted_mse"]), np.mean(per[real]), rtol=1e-4)
    assert float(aux["importance_sampling"]) == (history_state == "full")
    want_history = gd.update_history(
        history, jnp.asarray(t[real]), jnp.asarray(per[real], jnp.float32)
    )
    np.testing.assert_allclose(new_history.losses, want_history.losses, rtol=1e-4)
    np.testing.assert_array_equal(new_history.counts, want_history.counts)


def test_padded_rows_change_neither_loss_nor_gradient_nor_history():
    model = diffrec(**SMALL)
    x0 = _rows(13, users=10)
    params, history = model.init(jax.random.key(0), x0.shape[1])
    weights = jnp.asarray(np.arange(10) < 7, jnp.float32)
    garbage = x0.copy()
    garbage[7:] = np.random.default_rng(14).random((3, x0.shape[1])) * 50.0
    grad_fn = jax.jit(jax.value_and_grad(model.loss, has_aux=True))
    key = jax.random.key(15)
    outs = [
        grad_fn(params, history, UserBatch(jnp.arange(10), jnp.asarray(rows), weights), key, INFO)
        for rows in (x0, garbage)
    ]
    (value_a, (history_a, aux_a)), grads_a = outs[0]
    (value_b, (history_b, aux_b)), grads_b = outs[1]
    np.testing.assert_allclose(value_a, value_b, rtol=1e-6)
    chex.assert_trees_all_close(grads_a, grads_b, rtol=1e-5, atol=1e-7)
    chex.assert_trees_all_equal(history_a, history_b)
    np.testing.assert_allclose(aux_a["weighted_mse"], aux_b["weighted_mse"], rtol=1e-6)
    assert int(history_a.counts.sum()) == 7  # only the real rows entered the history


def test_score_runs_the_reverse_process():
    steps = 4
    model = diffrec(dims=(16,), steps=steps, noise_scale=0.1, noise_min=0.01, noise_max=0.2)
    x0 = _rows(9)
    batch = UserBatch(jnp.arange(x0.shape[0], dtype=jnp.int32), jnp.asarray(x0))
    params, _ = model.init(jax.random.key(0), x0.shape[1])
    got = jax.jit(model.score)(params, batch)
    assert got.shape == x0.shape and got.dtype == jnp.float32
    # numpy loop over all T steps (faithful, sampling_steps = 0, no noise).
    d = np_diffusion(
        schedules.get_schedule(
            "linear-var", steps, noise_scale=0.1, noise_min=0.01, noise_max=0.2, beta_fixed=True
        )
    )
    x = x0.astype(np.float64)
    for i in reversed(range(steps)):
        t = np.full(len(x), i)
        x = d["coef1"][i] * np_denoise(params, x, t) + d["coef2"][i] * x
    np.testing.assert_allclose(got, x, rtol=1e-4, atol=1e-5)


def test_score_with_sampling_noise_is_per_user():
    model = diffrec(sampling_steps=3, sampling_noise=True, reverse="corrected", **SMALL)
    x0 = _rows(10)
    users = jnp.arange(100, 100 + x0.shape[0], dtype=jnp.int32)
    params, _ = model.init(jax.random.key(0), x0.shape[1])
    score = jax.jit(model.score)
    full = score(params, UserBatch(users, jnp.asarray(x0)))
    part = score(params, UserBatch(users[4:8], jnp.asarray(x0[4:8])))
    np.testing.assert_allclose(part, full[4:8], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(score(params, UserBatch(users, jnp.asarray(x0))), full)
    other = diffrec(
        sampling_steps=3, sampling_noise=True, reverse="corrected", sampling_seed=1, **SMALL
    )
    assert not np.allclose(jax.jit(other.score)(params, UserBatch(users, jnp.asarray(x0))), full)


def _train_step(model, opt):
    def step(params, opt_state, history, batch, key):
        (value, (history, aux)), grads = jax.value_and_grad(model.loss, has_aux=True)(
            params, history, batch, key, INFO
        )
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, history, value

    return step


def test_train_step_compiles_once_and_is_deterministic():
    model = diffrec(**SMALL)
    x0 = _rows(11)
    batch = UserBatch(jnp.arange(x0.shape[0], dtype=jnp.int32), jnp.asarray(x0))
    opt = model.optimizer()
    step = jax.jit(chex.assert_max_traces(_train_step(model, opt), n=1))

    def run(seed, n_steps=15):
        params, history = model.init(jax.random.key(0), x0.shape[1])
        opt_state = opt.init(params)
        values = []
        for i in range(n_steps):
            key = jax.random.fold_in(jax.random.key(seed), i)
            params, opt_state, history, value = step(params, opt_state, history, batch, key)
            values.append(float(value))
        return params, history, values

    params_a, history_a, values_a = run(0)
    params_b, history_b, values_b = run(0)  # no retrace: max_traces would raise
    chex.assert_trees_all_equal((params_a, history_a), (params_b, history_b))
    assert values_a == values_b
    # 15 batches of 12 examples over 5 timesteps: the importance sampler switched on.
    assert bool(gd.history_full(history_a))
    _, _, values_c = run(1)
    assert values_c != values_a


def test_smoke_training_reduces_the_loss():
    rng = np.random.default_rng(12)
    # Two user groups with different item preferences: learnable structure.
    items = 40
    group = rng.integers(0, 2, 96)
    prefs = np.where(
        group[:, None] == 0,
        np.r_[np.full(20, 0.5), np.full(20, 0.05)],
        np.r_[np.full(20, 0.05), np.full(20, 0.5)],
    )
    x0 = (rng.random((96, items)) < prefs).astype(np.float32)
    model = diffrec(dims=(32,), steps=5, noise_scale=0.1, noise_min=0.01, noise_max=0.2, lr=3e-3)
    opt = model.optimizer()
    step = jax.jit(_train_step(model, opt))
    params, history = model.init(jax.random.key(0), items)
    opt_state = opt.init(params)
    diff = gd.make_diffusion(
        schedules.get_schedule(
            "linear-var", 5, noise_scale=0.1, noise_min=0.01, noise_max=0.2, beta_fixed=True
        )
    )
    noise = jax.random.normal(jax.random.key(99), x0.shape)
    all_t = jnp.arange(x0.shape[0]) % 5

    @jax.jit
    def eval_loss(params):  # fixed t and noise, no dropout
        x_t = gd.q_sample(diff, jnp.asarray(x0), all_t, noise)
        out = denoise(params, x_t, all_t)
        return jnp.mean(gd.per_example_loss(diff, out, jnp.asarray(x0), x_t, all_t, noise))

    before = float(eval_loss(params))
    for i in range(60):
        batch_rows = jnp.asarray(x0[(i * 32) % 96 : (i * 32) % 96 + 32])
        batch = UserBatch(jnp.arange(32, dtype=jnp.int32), batch_rows)
        params, opt_state, history, _ = step(
            params, opt_state, history, batch, jax.random.fold_in(jax.random.key(1), i)
        )
    after = float(eval_loss(params))
    assert after < 0.5 * before, (before, after)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(lr=0.0), "lr=0.0"),
        (dict(weight_decay=-1.0), "weight_decay=-1.0"),
        (dict(dims=()), "dims=()"),
        (dict(dims=(10, 0)), "dims="),
        (dict(dims="[200,600]"), "dims="),
        (dict(emb_size=0), "emb_size=0"),
        (dict(dropout=1.0), "dropout=1.0"),
        (dict(mean_type="v"), "mean_type='v'"),
        (dict(noise_scale=0.0), "noise_scale=0.0"),
        (dict(sampling_steps=41), "steps_from=41"),
        (dict(reverse="backwards"), "reverse='backwards'"),
        (dict(noise_schedule="quadratic"), "quadratic"),
        (dict(noise_min=0.02, noise_max=0.01), "noise_min=0.02"),
        (dict(steps=0), "steps=0"),
    ],
)
def test_invalid_hyperparameters(kwargs, match):
    with pytest.raises(
        ConfigError, match=match.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
    ):
        diffrec(**kwargs)


# --- the Recommender ---


def test_recommender_defaults_and_training_hparams():
    spec = models.get("diffrec")
    assert set(spec.defaults) == set(DEFAULTS) | {
        "batch_size",
        "max_epochs",
        "eval_every",
        "patience",
    }
    assert spec.defaults["batch_size"] == 400 and spec.defaults["max_epochs"] == 1000
    assert spec.kind == "trained" and spec.prepare is None and spec.diffusion == "gaussian"
    model = spec.build(lr=3e-4, batch_size=64, patience=2, dims=(16,))
    assert model.name == "diffrec"
    assert model.hparams["lr"] == 3e-4 and model.hparams["dims"] == (16,)
    plan = spec.train_plan(model.hparams, FitData(_matrix(25)))
    config = plan.config
    assert (config.batch_size, config.max_epochs, config.eval_every, config.patience) == (
        64,
        1000,
        5,
        2,
    )
    params, _ = jax.eval_shape(lambda k: plan.trainable.init(k, 25), jax.random.key(0))
    assert params["mlp"][0]["w"].shape == (35, 16)
    with pytest.raises(ConfigError, match="no hyperparameter"):
        spec.build(learning_rate=1.0)
    with pytest.raises(ConfigError, match="batch_size"):
        spec.build(batch_size=0)


def _original_early_stopping(metrics, max_epochs):
    """DiffRec's main.py loop: stop at the start of an epoch 20 epochs after the best one."""
    best_recall, best_epoch, evaluated = -100.0, 0, []
    for epoch in range(1, max_epochs + 1):
        if epoch - best_epoch >= 20:
            break
        if epoch % 5 == 0:
            evaluated.append(epoch)
            if metrics[epoch] > best_recall:
                best_recall, best_epoch = metrics[epoch], epoch
    return best_epoch, evaluated


@pytest.mark.parametrize("seed", range(6))
def test_early_stopping_matches_the_original(seed):
    config = train.row_train_config(models.get("diffrec").hparams())
    rng = np.random.default_rng(seed)
    max_epochs = 200
    # A random walk (rounded: ties are not improvements): new bests at irregular gaps.
    metrics = np.round(np.cumsum(rng.normal(0.05, 1.0, max_epochs + 1)), 1)
    es, evaluated = EarlyStopping(), []
    for epoch in range(1, max_epochs + 1):  # the training loop's schedule
        if epoch % config.eval_every == 0:
            evaluated.append(epoch)
            es, _ = early_stopping_update(es, float(metrics[epoch]), epoch)
            if should_stop(es, config.patience):
                break
    assert (es.best_epoch, evaluated) == _original_early_stopping(metrics, max_epochs)
