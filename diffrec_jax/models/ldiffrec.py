r"""L-DiffRec and LT-DiffRec: DiffRec in the latent space of grouped item VAEs (Wang et al. 2023).

Items are clustered by k-means on pretrained item embeddings (``item_emb``, LightGCN's in the
released datasets) into ``n_cate`` groups (:mod:`diffrec_jax.nn.kmeans`; cluster ids keep
the initial centres' order, items of a group ascending). A user's row, permuted into group order,
is encoded group by group; the diffusion runs on the concatenated latent; one linear decoder maps
the denoised latent back to all items (in group order; scores are permuted back to item order).

Layout (the original's ``in_dims=[300]``, ``out_dims=[]``, ``mlp_dims=[300]``), for group g with
:math:`n_g` items among :math:`n` and latent size :math:`L = 300`:

- :math:`\ell_g = \max(\lfloor n_g / n \cdot L \rfloor, 1)` for every group but the last, which
  takes the remainder :math:`L - \sum_{g' < g} \ell_{g'}` (:func:`latent_sizes`);
- encoder g: Linear(:math:`n_g \to 2 \ell_g`) + tanh; its output splits into :math:`\mu_g` and
  :math:`\log\sigma^2_g` (both in [-1, 1] because of the tanh); Dropout(0.1) on the whole input
  row first;
- latent :math:`z = \mu + e^{\log\sigma^2/2} \epsilon` in training (``reparam``), :math:`\mu` in
  scoring;
- denoiser: the DiffRec MLP on :math:`z` (:math:`L + e \to 300 \to L` for ``mlp_dims=[300]``),
  with Dropout(0.5) on its input;
- decoder: Linear(:math:`L \to n`), no activation.

Training loss for a batch, with the diffusion loss of DiffRec on :math:`z` (importance-sampled
timesteps, the loss history is the model state) and the decoder fed the denoiser's
:math:`\hat z_0`:

.. math::
   \mathcal L = \lambda_e\, \mathcal L_{diff}
   - \operatorname{mean}_u \sum_i \tilde x_{ui} \log\mathrm{softmax}(\mathrm{dec}(\hat z_0))_{ui}
   + \beta_s\, \mathrm{KL}, \qquad
   \mathrm{KL} = -\tfrac12 \operatorname{mean}_u \sum_k (1 + \log\sigma^2 - \mu^2 - \sigma^2),

with :math:`\lambda_e = \max((1 - e/500)\,\lambda, 0.005)` at epoch e (0-based) and
:math:`\beta_s = \min(0.3, s/200)` at step s (0-based) (:func:`diffusion_weight`,
:func:`kl_anneal`). Two AdamW optimisers: lr1/wd1 for the encoders and the decoder, lr2/wd2 for
the denoiser (:func:`param_partition`).

Faithful to the original code (``L-DiffRec/main.py``, ``models/Autoencoder.py``, ``DNN.py``):

- the reconstruction target :math:`\tilde x` is the *dropped-out* input row (the original's
  ``Encode`` returns the row after its Dropout(0.1), rescaled by 1/0.9);
- gradients flow through the diffusion target :math:`z` into the encoders;
- every Linear is Xavier-normal with zero bias (DiffRec's denoiser uses N(0, 0.001) biases);
- ``beta_fixed=False`` (the L-DiffRec diffusion never fixes :math:`\beta_0`);
- scoring: :math:`\mu` (no dropout) -> DiffRec's reverse process (all T steps from the clean
  latent for ``sampling_steps=0``) -> decoder; ``n_cate=1`` is the original's unclustered
  variant (identity permutation, one encoder).

Differences: ``reweight=False`` runs (unweighted diffusion mse and
:math:`\mathcal L_{diff} + \lambda_e \mathcal L_{VAE}`, the original's else branch; the original
crashes there, and its command-line flag could not be turned off anyway); only the released
one-layer encoder per group (``in_dims=[L]``) and one-layer decoder (``out_dims=[]``) are
implemented; k-means runs in float64 (:mod:`~diffrec_jax.nn.kmeans`).

LT-DiffRec is L-DiffRec on T-DiffRec's time-weighted train rows
(:func:`diffrec_jax.models.tdiffrec.time_weighted_split` as the registry entry's ``prepare``).

References:
  Wang, Xu, Feng, Lin, He, Chua, "Diffusion Recommender Model", SIGIR 2023.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from diffrec_jax import seeds
from diffrec_jax.diffusion import gaussian, schedules
from diffrec_jax.errors import ConfigError
from diffrec_jax.models import diffrec as diffrec_model
from diffrec_jax.models import tdiffrec
from diffrec_jax.nn import kmeans as kmeans_lib
from diffrec_jax.nn import layers
from diffrec_jax.protocol import (
    FitData,
    StepInfo,
    Trainable,
    UserBatch,
    mean_over_rows,
    row_weights,
)
from diffrec_jax.train import TrainPlan, row_train_config

Params = dict[str, Any]

AUTOENCODER, DENOISER = "autoencoder", "denoiser"  # optimiser partition labels


# -- item groups ----------------------------------------------------------------------------------


class ItemGroups(NamedTuple):
    """The item grouping of an L-DiffRec model (static host data).

    Attributes:
      perm: [n_items] int64 item indices in group order: group 0's items ascending, then group
        1's, ... (the original's ``category_map``). Position p of a permuted row is item perm[p].
      sizes: items per group, n_g.
      latent_sizes: latent dimensions per group, l_g (they sum to the latent size).
    """

    perm: np.ndarray
    sizes: tuple[int, ...]
    latent_sizes: tuple[int, ...]

    @property
    def n_items(self) -> int:
        return int(self.perm.shape[0])

    @property
    def inverse(self) -> np.ndarray:
        """[n_items] int64 position of every item in group order (argsort of `perm`)."""
        inv = np.empty_like(self.perm)
        inv[self.perm] = np.arange(self.perm.shape[0], dtype=self.perm.dtype)
        return inv


def latent_sizes(group_sizes: Sequence[int], latent_size: int) -> tuple[int, ...]:
    """The original's per-group latent sizes.

    Group g < last: ``int(n_g / n * latent_size)`` (1 if that is 0); the last group takes the
    remainder.

    Raises:
      ConfigError: the remainder is < 1 (too many groups for the latent size).
    """
    n = sum(int(s) for s in group_sizes)
    sizes = [max(int(int(s) / n * latent_size), 1) for s in group_sizes[:-1]]
    last = latent_size - sum(sizes)
    if last < 1:
        raise ConfigError(
            f"latent_size={latent_size} is too small for {len(group_sizes)} item groups of sizes "
            f"{list(group_sizes)}: the last group would get {last} latent dimensions"
        )
    return (*sizes, last)


def item_groups(
    item_emb,
    n_cate: int,
    latent_size: int,
    *,
    init: str = "random",
    seed: int = 1,
    tol: float = kmeans_lib.TOL,
    max_iter: int = kmeans_lib.MAX_ITER,
) -> ItemGroups:
    """Clusters the items by k-means on `item_emb` and lays out the groups.

    Args:
      item_emb: [n_items, d] item embeddings.
      n_cate: number of groups; 1 skips the clustering (the original's unclustered variant).
      latent_size: total latent size L.
      init, seed, tol, max_iter: :func:`diffrec_jax.nn.kmeans.kmeans` options (the default
        reproduces kmeans_pytorch's initialisation under the original's ``np.random.seed(1)``).

    Raises:
      ConfigError: a group ends up empty, or too many groups for `latent_size`.
      DataError: `item_emb` is not a finite 2-D array.
    """
    item_emb = np.asarray(item_emb)
    sizes: tuple[int, ...]
    if n_cate == 1:
        n = kmeans_lib.check_points(item_emb, 1).shape[0]  # the clustered path's input checks
        perm, sizes = np.arange(n, dtype=np.int64), (n,)
    else:
        labels = kmeans_lib.kmeans(
            item_emb, n_cate, init=init, seed=seed, tol=tol, max_iter=max_iter
        ).labels
        groups = [np.flatnonzero(labels == g) for g in range(n_cate)]
        sizes = tuple(len(g) for g in groups)
        if min(sizes) == 0:
            raise ConfigError(
                f"k-means left an item group empty (group sizes {list(sizes)}); use a smaller "
                f"n_cate (got {n_cate}) or another kmeans_seed"
            )
        perm = np.concatenate(groups).astype(np.int64)
    return ItemGroups(perm, sizes, latent_sizes(sizes, latent_size))


# -- parameters and forward pieces ----------------------------------------------------------------


def init_params(
    key: jax.Array, groups: ItemGroups, mlp_dims: Sequence[int] = (300,), emb_size: int = 10
) -> Params:
    """L-DiffRec parameters, every Linear Xavier-normal with zero bias.

    Returns:
      ``{"encoder": [dense [n_g, 2 l_g] per group], "decoder": dense [L, n_items],
      "denoiser": {"time": dense [emb, emb], "mlp": [dense, ...]}}`` float32, the denoiser sizes
      from :func:`diffrec_jax.models.diffrec.denoiser_sizes` (L, mlp_dims, emb).
    """
    latent = sum(groups.latent_sizes)
    key_enc, key_dec, key_time, key_mlp = jax.random.split(key, 4)
    enc_keys = jax.random.split(key_enc, len(groups.sizes))
    return {
        "encoder": [
            layers.init_dense(k, n_g, 2 * l_g, bias_std=0.0)
            for k, n_g, l_g in zip(enc_keys, groups.sizes, groups.latent_sizes, strict=True)
        ],
        "decoder": layers.init_dense(key_dec, latent, groups.n_items, bias_std=0.0),
        DENOISER: {
            "time": layers.init_dense(key_time, emb_size, emb_size, bias_std=0.0),
            "mlp": layers.init_mlp(
                key_mlp, diffrec_model.denoiser_sizes(latent, mlp_dims, emb_size), bias_std=0.0
            ),
        },
    }


def param_partition(params: Params) -> Params:
    """The optimiser label of every leaf: "autoencoder" (encoders, decoder) or "denoiser"."""
    labels = {name: jax.tree.map(lambda _: AUTOENCODER, sub) for name, sub in params.items()}
    labels[DENOISER] = jax.tree.map(lambda _: DENOISER, params[DENOISER])
    return labels


def encode(params: Params, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The group encoders on a row in group order: [B, n_items] -> (mu, logvar), [B, L] each.

    Group g reads the next n_g columns (n_g, 2 l_g from its weight's shape); its tanh output
    splits into mu_g (first l_g) and logvar_g; the groups' parts are concatenated.
    """
    mus, logvars, start = [], [], 0
    for layer in params["encoder"]:
        n_g, two_l = layer["w"].shape
        h = jnp.tanh(layers.dense(layer, x[:, start : start + n_g]))
        mus.append(h[:, : two_l // 2])
        logvars.append(h[:, two_l // 2 :])
        start += n_g
    return jnp.concatenate(mus, axis=-1), jnp.concatenate(logvars, axis=-1)


def decode(params: Params, z: jax.Array) -> jax.Array:
    """The decoder: [B, L] latent -> [B, n_items] logits in group order."""
    return layers.dense(params["decoder"], z)


def denoise(
    params: Params,
    z_t: jax.Array,
    t: jax.Array,
    keep: jax.Array | None = None,
    *,
    dropout: float = 0.5,
    norm: bool = False,
) -> jax.Array:
    """The latent denoiser (the original's DNN): [B, L] and [B] timesteps -> [B, L].

    Args:
      params: ``params["denoiser"]``.
      z_t: [B, L] noised latents.
      t: [B] int timesteps.
      keep: [B, L] bool dropout mask of the input (train), or None (no dropout, scoring).
      dropout: the dropout rate the mask was drawn with (kept entries are scaled by 1/(1-rate)).
      norm: L2-normalise the input first.
    """
    emb_size = params["time"]["w"].shape[0]
    time_emb = layers.dense(params["time"], layers.timestep_embedding(t, emb_size))
    x = layers.l2_normalize(z_t) if norm else z_t
    if keep is not None:
        x = jnp.where(keep, x / (1.0 - dropout), jnp.zeros_like(x))
    return layers.mlp(params["mlp"], jnp.concatenate([x, time_emb.astype(x.dtype)], axis=-1))


def kl_anneal(step: jax.Array, cap: float = 0.3, steps: int = 200) -> jax.Array:
    """The KL weight at global step `step` (0-based): min(cap, step / steps); cap if steps <= 0."""
    if steps <= 0:
        return jnp.float32(cap)
    return jnp.minimum(jnp.float32(cap), jnp.asarray(step, jnp.float32) / steps)


def diffusion_weight(
    epoch: jax.Array, lamda: float = 0.03, cap: float = 0.005, steps: int = 500
) -> jax.Array:
    """lambda at epoch `epoch` (0-based): max((1 - epoch / steps) lamda, cap); max(lamda, cap)
    if steps <= 0."""
    if steps <= 0:
        return jnp.float32(max(lamda, cap))
    frac = 1.0 - jnp.asarray(epoch, jnp.float32) / steps
    return jnp.maximum(frac * jnp.float32(lamda), jnp.float32(cap))


# -- randomness of one training step --------------------------------------------------------------


class TrainNoise(NamedTuple):
    """Every random draw of one training step (global batch shapes).

    Attributes:
      input_keep: [B, n_items] bool, the encoder input's dropout mask (item order).
      reparam: [B, L] float32 standard normal of the reparameterisation.
      t: [B] int32 timesteps; pt: [B] float32 their probability relative to uniform.
      diffusion: [B, L] float32 standard normal of q_sample.
      denoiser_keep: [B, L] bool, the denoiser input's dropout mask.
    """

    input_keep: jax.Array
    reparam: jax.Array
    t: jax.Array
    pt: jax.Array
    diffusion: jax.Array
    denoiser_keep: jax.Array


def draw_noise(
    key: jax.Array,
    history: gaussian.LossHistory,
    shape: tuple[int, int],
    latent_size: int,
    input_dropout: float,
    dropout: float,
) -> TrainNoise:
    """Draws a step's :class:`TrainNoise` from `key` for a [B, n_items] batch."""
    batch, n_items = shape
    k_in, k_rep, k_t, k_noise, k_drop = jax.random.split(key, 5)
    t, pt = gaussian.sample_timesteps(k_t, history, batch, "importance")
    return TrainNoise(
        input_keep=jax.random.bernoulli(k_in, 1.0 - input_dropout, (batch, n_items)),
        reparam=jax.random.normal(k_rep, (batch, latent_size), jnp.float32),
        t=t,
        pt=pt,
        diffusion=jax.random.normal(k_noise, (batch, latent_size), jnp.float32),
        denoiser_keep=jax.random.bernoulli(k_drop, 1.0 - dropout, (batch, latent_size)),
    )


# -- the model ------------------------------------------------------------------------------------


class LDiffRec(NamedTuple):
    """An L-DiffRec model: its pure functions and the static pieces they close over.

    Attributes:
      trainable: ``Trainable(init, loss, score, optimizer)`` for the shared training loop.
      groups: the :class:`ItemGroups` (k-means clustering of the items).
      diffusion: the diffusion arrays.
      loss_terms: ``loss_terms(params, history, batch, noise, info) -> (loss, (history, aux))``,
        the loss for given :class:`TrainNoise` draws (``trainable.loss`` draws them from its key
        with :func:`draw_noise`).
    """

    trainable: Trainable
    groups: ItemGroups
    diffusion: gaussian.GaussianDiffusion
    loss_terms: Callable[..., Any]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"L-DiffRec needs an int {name} >= 1, got {name}={value!r}")
    return int(value)


def _check_item_emb(item_emb) -> np.ndarray:
    if item_emb is None:
        raise ConfigError(
            "L-DiffRec needs item embeddings to cluster the items: item_emb=[n_items, d] array "
            "(DiffRec dataset folders provide item_emb.npy, loaded as Dataset.extras['item_emb'], "
            "which the experiment passes to models that take item_emb)"
        )
    if isinstance(item_emb, str | bytes):
        raise ConfigError(
            f"L-DiffRec item_emb must be an [n_items, d] array, got the string {item_emb!r}"
        )
    arr = np.asarray(item_emb)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ConfigError(f"L-DiffRec item_emb must be an [n_items, d] array, got {arr.shape}")
    return arr


def _validate(hp: Mapping[str, Any]) -> None:
    for name in ("lr1", "lr2"):
        if not hp[name] > 0:
            raise ConfigError(f"L-DiffRec needs {name} > 0, got {name}={hp[name]!r}")
    for name in ("wd1", "wd2", "lamda", "anneal_cap", "vae_anneal_cap"):
        if not hp[name] >= 0:
            raise ConfigError(f"L-DiffRec needs {name} >= 0, got {name}={hp[name]!r}")
    for name in ("anneal_steps", "vae_anneal_steps"):
        if isinstance(hp[name], bool) or not isinstance(hp[name], int | np.integer):
            raise ConfigError(f"L-DiffRec needs an int {name}, got {name}={hp[name]!r}")
    for name in ("n_cate", "latent_size", "emb_size"):
        _positive_int(name, hp[name])
    dims = hp["mlp_dims"]
    if (
        isinstance(dims, str | bytes)
        or not isinstance(dims, Sequence)
        or not dims
        or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims)
    ):
        raise ConfigError(
            f"L-DiffRec mlp_dims must be a non-empty sequence of positive ints, got {dims=}"
        )
    for name in ("input_dropout", "dropout"):
        if not 0 <= hp[name] < 1:
            raise ConfigError(f"L-DiffRec needs 0 <= {name} < 1, got {name}={hp[name]!r}")
    if hp["mean_type"] not in gaussian.MEAN_TYPES:
        raise ConfigError(
            f"unknown mean_type={hp['mean_type']!r}; expected one of {list(gaussian.MEAN_TYPES)}"
        )
    if not hp["noise_scale"] > 0:
        raise ConfigError(
            "L-DiffRec needs noise_scale > 0 (the original's noise_scale=0 no-diffusion mode is "
            f"not supported), got noise_scale={hp['noise_scale']!r}"
        )
    gaussian.reverse_timesteps(hp["steps"], hp["sampling_steps"], hp["reverse"])


GROUPS = "groups"
"""Key of the item groups in the scoring parameters (``Trainable.export`` adds them):
``{"perm": [n_items] int32 group order, "inverse": [n_items] int32 back to item order}``."""


def make_score(
    diff: gaussian.GaussianDiffusion,
    *,
    dropout: float,
    norm: bool,
    sampling_steps: int,
    sampling_noise: bool,
    reverse: str,
    sampling_seed: int,
):
    """``score(params, batch) -> [B, n_items]`` of exported parameters (with :data:`GROUPS`):
    encode the row in group order, run the reverse process on the latent, decode, and map the
    scores back to item order. Independent of the data: the groups travel in `params`."""

    def score(params: Params, batch: UserBatch) -> jax.Array:
        groups = params[GROUPS]
        mu, _ = encode(params, batch.rows[:, groups["perm"]])

        def denoise_fn(z, t):
            return denoise(params[DENOISER], z, t, None, dropout=dropout, norm=norm)

        key = None
        if sampling_steps > 0 or sampling_noise:
            key = seeds.sampling_keys(sampling_seed, batch.users)
        z = gaussian.p_sample(
            diff,
            denoise_fn,
            mu,
            key,
            steps_from=sampling_steps,
            sampling_noise=sampling_noise,
            reverse=reverse,
        )
        return decode(params, z)[:, groups["inverse"]]  # back to item order

    return score


def _diffusion(hp: Mapping[str, Any]) -> gaussian.GaussianDiffusion:
    betas = schedules.get_schedule(
        hp["noise_schedule"],
        hp["steps"],
        noise_scale=hp["noise_scale"],
        noise_min=hp["noise_min"],
        noise_max=hp["noise_max"],
        beta_fixed=hp["beta_fixed"],
    )
    return gaussian.make_diffusion(betas, hp["mean_type"])


def ldiffrec_model(
    item_emb,
    *,
    lr1: float = 1e-3,
    lr2: float = 5e-4,
    wd1: float = 0.0,
    wd2: float = 0.0,
    n_cate: int = 2,
    latent_size: int = 300,
    mlp_dims: Sequence[int] = (300,),
    emb_size: int = 10,
    norm: bool = False,
    input_dropout: float = 0.1,
    dropout: float = 0.5,
    reparam: bool = True,
    lamda: float = 0.03,
    anneal_cap: float = 0.005,
    anneal_steps: int = 500,
    vae_anneal_cap: float = 0.3,
    vae_anneal_steps: int = 200,
    steps: int = 40,
    noise_schedule: str = "linear-var",
    noise_scale: float = 0.005,
    noise_min: float = 0.005,
    noise_max: float = 0.02,
    beta_fixed: bool = False,
    mean_type: str = "x0",
    reweight: bool = True,
    sampling_steps: int = 0,
    sampling_noise: bool = False,
    reverse: str = "faithful",
    sampling_seed: int = 0,
    kmeans_init: str = "random",
    kmeans_seed: int = 1,
    kmeans_tol: float = kmeans_lib.TOL,
    kmeans_max_iter: int = kmeans_lib.MAX_ITER,
) -> LDiffRec:
    """Builds L-DiffRec: clusters the items, returns its pure functions and static pieces.

    Defaults are the released ML-1M clean configuration (batch size 400 is the loop's business).

    Args:
      item_emb: [n_items, d] item embeddings to cluster.
      lr1, wd1: AdamW of the encoders and the decoder; lr2, wd2: AdamW of the denoiser.
      n_cate: number of item groups (k-means clusters).
      latent_size: L (the original's ``in_dims=[300]``).
      mlp_dims, emb_size, norm, dropout: the denoiser (as DiffRec's ``dims``, ...).
      input_dropout: dropout on the encoder input (the original's AutoEncoder dropout, 0.1).
      reparam: sample the latent in training (else the mean).
      lamda, anneal_cap, anneal_steps: :func:`diffusion_weight`.
      vae_anneal_cap, vae_anneal_steps: :func:`kl_anneal`.
      steps, noise_schedule, noise_scale, noise_min, noise_max, beta_fixed, mean_type,
        reweight: the diffusion (:func:`diffrec_jax.diffusion.schedules.get_schedule`).
      sampling_steps, sampling_noise, reverse, sampling_seed: the reverse process at scoring,
        as in :func:`diffrec_jax.models.diffrec.diffrec`.
      kmeans_init, kmeans_seed, kmeans_tol, kmeans_max_iter: the clustering
        (:func:`item_groups`); the defaults give the original's initial centres.

    Returns:
      An :class:`LDiffRec`: its ``trainable`` (params as :func:`init_params`, model state the
      diffusion's :class:`~diffrec_jax.diffusion.gaussian.LossHistory`; the loss needs the
      :class:`~diffrec_jax.protocol.StepInfo` for its schedules), the item groups, the
      diffusion and the noise-explicit ``loss_terms``.

    Raises:
      ConfigError: an invalid hyperparameter, missing item embeddings, an empty cluster.
      DataError: non-finite item embeddings.
    """
    hp = {k: v for k, v in locals().items() if k != "item_emb"}
    _validate(hp)
    item_emb = _check_item_emb(item_emb)
    groups = item_groups(
        item_emb,
        int(n_cate),
        int(latent_size),
        init=kmeans_init,
        seed=kmeans_seed,
        tol=kmeans_tol,
        max_iter=kmeans_max_iter,
    )
    diff = _diffusion(hp)
    mlp_dims = tuple(int(d) for d in mlp_dims)
    latent_size, emb_size = int(latent_size), int(emb_size)
    norm, reweight, reparam = bool(norm), bool(reweight), bool(reparam)
    sampling_noise = bool(sampling_noise)
    input_dropout, dropout = float(input_dropout), float(dropout)
    perm = jnp.asarray(groups.perm, jnp.int32)
    inverse = jnp.asarray(groups.inverse, jnp.int32)

    def init(key: jax.Array, n_items: int) -> tuple[Params, gaussian.LossHistory]:
        if n_items != groups.n_items:
            raise ConfigError(
                f"L-DiffRec item_emb has {groups.n_items} rows but the train matrix has "
                f"{n_items} items; the embeddings must be indexed like the items"
            )
        return init_params(key, groups, mlp_dims, emb_size), gaussian.init_history(steps)

    def loss_terms(
        params: Params,
        history: gaussian.LossHistory,
        batch: UserBatch,
        noise: TrainNoise,
        info: StepInfo,
    ):
        """The loss for given draws: (scalar, (new history, aux))."""
        x = jnp.where(noise.input_keep, batch.rows / (1.0 - input_dropout), 0.0)
        x = x[:, perm]  # the dropped-out row in group order: encoder input and VAE target
        mu, logvar = encode(params, x)
        z0 = mu + jnp.exp(0.5 * logvar) * noise.reparam if reparam else mu
        kl = -0.5 * jnp.sum(1.0 + logvar - mu**2 - jnp.exp(logvar), axis=-1)

        z_t = gaussian.q_sample(diff, z0, noise.t, noise.diffusion)
        keep = noise.denoiser_keep
        out = denoise(params[DENOISER], z_t, noise.t, keep, dropout=dropout, norm=norm)
        per_example = gaussian.per_example_loss(
            diff, out, z0, z_t, noise.t, noise.diffusion, reweight=reweight
        )
        diffusion_loss = mean_over_rows(per_example / noise.pt, batch)
        if mean_type == "x0":
            z0_hat = out
        else:
            z0_hat = gaussian.predict_x0_from_eps(diff, z_t, noise.t, out)

        logits = decode(params, z0_hat)
        reconstruction = -jnp.sum(jax.nn.log_softmax(logits, axis=-1) * x, axis=-1)
        beta = kl_anneal(info.step, vae_anneal_cap, vae_anneal_steps)
        lam = diffusion_weight(info.epoch, lamda, anneal_cap, anneal_steps)
        vae_loss = mean_over_rows(reconstruction, batch) + beta * mean_over_rows(kl, batch)
        if reweight:
            total = lam * diffusion_loss + vae_loss
        else:
            total = diffusion_loss + lam * vae_loss
        # Rows padding the last batch (weight 0) neither count in the loss nor enter the history.
        new_history = gaussian.update_history(history, noise.t, per_example, row_weights(batch))
        sg = jax.lax.stop_gradient
        aux = {
            "diffusion_loss": sg(diffusion_loss),
            "reconstruction": sg(mean_over_rows(reconstruction, batch)),
            "kl": sg(mean_over_rows(kl, batch)),
            "lambda": lam,
            "kl_weight": beta,
            "importance_sampling": gaussian.history_full(history).astype(jnp.float32),
        }
        return total, (new_history, aux)

    def loss(
        params: Params,
        history: gaussian.LossHistory,
        batch: UserBatch,
        key: jax.Array,
        info: StepInfo | None = None,
    ):
        if info is None:
            raise ConfigError("the L-DiffRec loss needs a StepInfo (its schedules anneal)")
        n_rows, n_items = batch.rows.shape
        noise = draw_noise(key, history, (n_rows, n_items), latent_size, input_dropout, dropout)
        return loss_terms(params, history, batch, noise, info)

    score = make_score(
        diff,
        dropout=dropout,
        norm=norm,
        sampling_steps=sampling_steps,
        sampling_noise=sampling_noise,
        reverse=reverse,
        sampling_seed=sampling_seed,
    )

    def export(params: Params) -> Params:
        return {**params, GROUPS: {"perm": perm, "inverse": inverse}}

    def optimizer() -> optax.GradientTransformation:
        return optax.multi_transform(
            {
                AUTOENCODER: optax.adamw(lr1, weight_decay=wd1),
                DENOISER: optax.adamw(lr2, weight_decay=wd2),
            },
            param_partition,
        )

    return LDiffRec(Trainable(init, loss, score, optimizer, export), groups, diff, loss_terms)


def ldiffrec(item_emb, **hparams: Any) -> Trainable:
    """L-DiffRec's :class:`~diffrec_jax.protocol.Trainable`: ``ldiffrec_model(...).trainable``.

    Args:
      item_emb: [n_items, d] item embeddings to cluster.
      **hparams: any of :data:`DEFAULTS` (see :func:`ldiffrec_model`).
    """
    return ldiffrec_model(item_emb, **hparams).trainable


DEFAULTS: dict[str, Any] = {
    name: p.default
    for name, p in inspect.signature(ldiffrec_model).parameters.items()
    if name != "item_emb"
}
"""Every model hyperparameter of :func:`ldiffrec` and its default (the ML-1M release)."""


# -- as registered models --------------------------------------------------------------------------

RECOMMENDER_DEFAULTS: dict[str, Any] = {**DEFAULTS, **diffrec_model.TRAIN_DEFAULTS}
"""Every hyperparameter of ``"ldiffrec"`` and its default. The item embeddings are side data
(``FitData.side["item_emb"]``, from the dataset's ``item_emb.npy``), not a hyperparameter."""


def check_hparams(values: Mapping[str, Any]) -> None:
    """Validates L-DiffRec's hyperparameters (raises ConfigError); the item embeddings are data
    (``FitData.side["item_emb"]``) and are checked when the model is fit."""
    _validate({k: values[k] for k in DEFAULTS})


LT_RECOMMENDER_DEFAULTS: dict[str, Any] = {**RECOMMENDER_DEFAULTS, **tdiffrec.TIME_DEFAULTS}
"""Every hyperparameter of ``"ltdiffrec"``: L-DiffRec's plus w_min, w_max and time_order."""


def check_lt_hparams(values: Mapping[str, Any]) -> None:
    """Validates LT-DiffRec's hyperparameters: L-DiffRec's and the time weights."""
    check_hparams(values)
    tdiffrec.check_time_hparams(values)


def plan(values: Mapping[str, Any], data: FitData) -> TrainPlan:
    """The training plan of ``"ldiffrec"`` / ``"ltdiffrec"``: the items of
    ``data.side["item_emb"]`` clustered now, at fit time (:func:`ldiffrec_model`), and the
    shared loop's configuration from the training hyperparameters."""
    trainable = ldiffrec(data.side["item_emb"], **{k: values[k] for k in DEFAULTS})
    return TrainPlan(trainable, row_train_config(values))


def score_from_hparams(values: Mapping[str, Any]):
    """The score function of the registry entry (of exported parameters, see
    :func:`make_score`), built from the hyperparameters alone."""
    hp = {k: values[k] for k in DEFAULTS}
    _validate(hp)
    return make_score(
        _diffusion(hp),
        dropout=float(hp["dropout"]),
        norm=bool(hp["norm"]),
        sampling_steps=hp["sampling_steps"],
        sampling_noise=bool(hp["sampling_noise"]),
        reverse=hp["reverse"],
        sampling_seed=hp["sampling_seed"],
    )
