"""The one training loop of every gradient-trained model.

:func:`train` takes a :class:`~diffrec_jax.protocol.Trainable` (init / loss / score /
optimizer) and :class:`~diffrec_jax.protocol.FitData` and returns the parameters that scored
best on validation. It reads top to bottom in sections: devices and mesh, randomness, input,
model and optimiser, the update step, checkpoints, validation, the epoch loop.

Randomness comes from one typed key (``jax.random.key(config.seed)`` unless given), split into
an initialisation key, a step key and a shuffle key. Step ``s`` uses
``jax.random.fold_in(step_key, s)`` (folded inside the compiled step) for the whole global batch;
epoch ``e`` visits users in the order ``np.random.default_rng([*shuffle_words, e])``. Nothing
depends on the number of devices, so 1 and 8 devices give the same result up to float
reduction order.

Several hosts (after ``jax.distributed.initialize``): every process runs this same function on
the same data; the mesh spans all processes' devices, every process draws the same batch
indices and densifies only the rows its devices hold (:mod:`diffrec_jax.train.sharding`), and
validation runs on every process on its own devices.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.sparse as sp
from absl import logging

from diffrec_jax.data.interactions import InteractionMatrix
from diffrec_jax.data.split import Split
from diffrec_jax.errors import ConfigError, DiffrecError
from diffrec_jax.evaluation import Evaluator
from diffrec_jax.protocol import (
    FitData,
    Params,
    SeqFitData,
    StepInfo,
    Trainable,
    UserBatch,
    exported,
)
from diffrec_jax.train import sharding
from diffrec_jax.train.checkpoint import Checkpointer
from diffrec_jax.train.config import TrainConfig

MAX_STEPS_IN_FLIGHT = 2
"""Update steps dispatched but not finished at any time: the host prepares the next batch
while the device works on these, and memory holds at most this many batches plus one."""


class TrainingDiverged(DiffrecError):
    """The training loss became NaN or infinite.

    Attributes:
      step: global step (0-based) whose loss was not finite.
      epoch: epoch (1-based) of that step.
      checkpoint: path of the last good checkpoint (the newest one whose checksums verify), or
        None.
    """

    def __init__(self, message: str, *, step: int, epoch: int, checkpoint: str | None = None):
        super().__init__(message)
        self.step = step
        self.epoch = epoch
        self.checkpoint = checkpoint


class TrainState(NamedTuple):
    """Everything the update step changes.

    Attributes:
      params: model parameters (pytree).
      opt_state: optimiser state (pytree).
      model_state: the model's explicit state (pytree, may be ``()``).
      step: [] int32 number of optimisation steps done.
    """

    params: Params
    opt_state: Any
    model_state: Any
    step: jax.Array


class EpochRecord(NamedTuple):
    """One line of the training history.

    Attributes:
      epoch: epochs completed (1-based, as in the original logs).
      loss: mean training loss over the epoch's steps.
      metrics: validation summary ({"Recall@20": ...}) if the epoch was evaluated, else None.
      seconds: wall time of the epoch's training steps (evaluation excluded).
      aux: mean over the epoch's steps of each diagnostic the loss returns.
    """

    epoch: int
    loss: float
    metrics: dict[str, float] | None
    seconds: float
    aux: dict[str, float]


class EarlyStopping(NamedTuple):
    """Early-stopping state.

    Attributes:
      best_metric: best validation metric so far, or None before the first evaluation.
      best_epoch: epoch of `best_metric`, or None.
      bad_evals: consecutive evaluations since then without a strict improvement.
    """

    best_metric: float | None = None
    best_epoch: int | None = None
    bad_evals: int = 0


class TrainResult(NamedTuple):
    """What :func:`train` returns.

    Attributes:
      params: the best parameters on validation (the final ones when nothing was evaluated),
        as trained: score with ``exported(trainable, params)``.
      best_epoch: epoch of `params`, or None when nothing was evaluated.
      best_metrics: validation summary at `best_epoch`, or None.
      history: one :class:`EpochRecord` per epoch trained (including resumed ones).
      state: the final :class:`TrainState` (last epoch, not the best one).
      stopped_early: whether patience ran out before `max_epochs`.
    """

    params: Params
    best_epoch: int | None
    best_metrics: dict[str, float] | None
    history: tuple[EpochRecord, ...]
    state: TrainState
    stopped_early: bool


class EvaluatorLike(Protocol):
    """What the loop needs from :class:`diffrec_jax.evaluation.Evaluator` (it is called with
    the model's score function and its scoring parameters, ``exported(trainable, params)``)."""

    def evaluate(self, score_fn, params, parts=...) -> Mapping[str, Any]: ...


# -- pure pieces ----------------------------------------------------------------------------------


def early_stopping_update(
    es: EarlyStopping, metric: float, epoch: int
) -> tuple[EarlyStopping, bool]:
    """Records an evaluation; returns the new state and whether `metric` is a new best.

    Only a strict improvement counts (a NaN metric never improves), as in the original code.
    """
    if es.best_metric is None or metric > es.best_metric:
        return EarlyStopping(float(metric), int(epoch), 0), True
    return es._replace(bad_evals=es.bad_evals + 1), False


def should_stop(es: EarlyStopping, patience: int | None) -> bool:
    """True once `patience` consecutive evaluations have not improved."""
    return patience is not None and es.bad_evals >= patience


def steps_per_epoch(n_users: int, batch_size: int, last_batch: str) -> int:
    """Number of optimisation steps in one epoch."""
    if last_batch == "drop":
        return n_users // batch_size
    return -(-n_users // batch_size)


def epoch_batches(
    n_users: int,
    batch_size: int,
    *,
    epoch: int,
    seed_words: tuple[int, ...],
    shuffle: bool = True,
    last_batch: str = "pad",
) -> tuple[np.ndarray, np.ndarray]:
    """The users of every step of an epoch, and their weights.

    Args:
      n_users: number of users (rows of the train matrix).
      batch_size: users per step.
      epoch: epoch number; with `seed_words` it seeds the order.
      seed_words: non-negative ints seeding the shuffles of the whole run.
      shuffle: False keeps index order.
      last_batch: "pad" fills the last batch with repeated users of weight 0; "drop" leaves the
        users after the last full batch out of this epoch.

    Returns:
      users: [steps, batch_size] int32 user indices.
      weights: [steps, batch_size] float32, 1 for real rows and 0 for padding.
    """
    if shuffle:
        order = np.random.default_rng([*seed_words, epoch]).permutation(n_users)
    else:
        order = np.arange(n_users)
    n_steps = steps_per_epoch(n_users, batch_size, last_batch)
    positions = np.arange(n_steps * batch_size)
    users = order[positions % n_users].astype(np.int32).reshape(n_steps, batch_size)
    weights = (positions < n_users).astype(np.float32).reshape(n_steps, batch_size)
    return users, weights


def seed_words(key: jax.Array) -> tuple[int, ...]:
    """The data of a typed key as non-negative ints (to seed numpy generators)."""
    return tuple(int(w) for w in np.asarray(jax.random.key_data(key)).ravel())


def make_train_step(
    model: Trainable, tx: optax.GradientTransformation
) -> Callable[..., tuple[TrainState, tuple[jax.Array, Mapping[str, Any]]]]:
    """The update step ``(state, batch, step_key, epoch) -> (state, (loss, aux))``, unjitted.

    The step key is folded with the step counter here, so one compiled function serves every
    step. Outputs are stripped of weak types so the second call hits the compilation cache.
    """

    def train_step(state: TrainState, batch: UserBatch, step_key: jax.Array, epoch: jax.Array):
        key = jax.random.fold_in(step_key, state.step)
        info = StepInfo(step=state.step, epoch=epoch)
        grad_fn = jax.value_and_grad(model.loss, has_aux=True)
        (loss, (model_state, aux)), grads = grad_fn(
            state.params, state.model_state, batch, key, info
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new_state = TrainState(params, opt_state, model_state, state.step + 1)
        return strong_types(new_state), (loss, dict(aux))

    return train_step


def strong_types(tree):
    """Drops weak types from the numeric leaves of `tree` (they would force a retrace)."""

    def strong(x):
        if isinstance(x, bool | int | float | np.ndarray | np.generic):
            x = jnp.asarray(x)
        if isinstance(x, jax.Array) and not jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.lax.convert_element_type(x, x.dtype)
        return x

    return jax.tree.map(strong, tree)


def pad_batches(users: np.ndarray, weights: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """[steps, batch_size] users and weights widened to `rows` columns: the extra rows repeat
    the first users of each batch with weight 0 (their loss terms count for nothing)."""
    extra = rows - users.shape[1]
    if extra <= 0:
        return users, weights
    cols = np.arange(extra) % users.shape[1]
    return (
        np.concatenate([users, users[:, cols]], axis=1),
        np.concatenate([weights, np.zeros((weights.shape[0], extra), weights.dtype)], axis=1),
    )


class BatchSource(Protocol):
    """Where the training examples of :func:`train` come from.

    Attributes:
      n_examples: number of training examples (users, or sequences / prefixes).
      n_items: size of the item index space (passed to ``Trainable.init``).

    Both are read-only (a named tuple's field or a property satisfies them).
    """

    @property
    def n_examples(self) -> int: ...

    @property
    def n_items(self) -> int: ...

    def batch(self, indices: np.ndarray, weights: np.ndarray) -> Any:
        """The model's batch (a pytree with leading axis B) of examples `indices` ([B] int32),
        with row `weights` ([B] float32, 0 for padding)."""
        ...


class DenseRows(NamedTuple):
    """The default source: users of a train matrix, densified batch by batch ([B, n_items])."""

    matrix: InteractionMatrix

    @property
    def n_examples(self) -> int:
        return self.matrix.shape[0]

    @property
    def n_items(self) -> int:
        return self.matrix.shape[1]

    def batch(self, indices: np.ndarray, weights: np.ndarray) -> UserBatch[np.ndarray]:
        """Users `indices` ([B] int32) with their dense train rows and row `weights`, host
        arrays (the loop places them on the devices)."""
        return UserBatch(indices, self.matrix.dense_rows(indices), weights)


def validation_evaluator(data: FitData, config: TrainConfig):
    """An Evaluator over (train, valid) only: its test part is an empty matrix.

    Raises:
      ConfigError: `data` has no valid part.
    """
    if data.valid is None:
        raise ConfigError("a validation evaluator needs FitData.valid; it is None")
    empty = InteractionMatrix(sp.csr_array(data.train.shape, dtype=np.float32))
    split = Split(data.train, data.valid, empty, name="fit")
    return Evaluator(
        split, ks=config.ks, convention=config.convention, batch_size=config.eval_batch_size
    )


def _summary(evaluator: EvaluatorLike, score_fn, params, select_metric: str) -> dict[str, float]:
    results = evaluator.evaluate(score_fn, params, parts=("valid",))
    summary = {name: float(v) for name, v in results["valid"].summary.items()}
    if select_metric not in summary:
        raise ConfigError(
            f"TrainConfig.select_metric={select_metric!r} is not computed by the "
            f"evaluator; expected one of {sorted(summary)}"
        )
    return summary


def _copy(tree):
    return jax.tree.map(jnp.copy, tree)


@jax.jit
def _all_finite(tree) -> jax.Array:
    """[] bool: every inexact (float) leaf of `tree` is finite."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack([jnp.isfinite(x).all() for x in leaves] or [jnp.bool_(True)]))


def _diverged(what: str, step: int, epoch: int, ckpt: Checkpointer | None, template: Any):
    """Raises TrainingDiverged for global `step` of `epoch`, naming the newest checkpoint that
    verifies (restored into `template`'s structure) as the last good one."""
    last = None
    if ckpt is not None:
        ckpt.wait()  # a save still in flight is the last good checkpoint
        latest = ckpt.newest_intact_epoch(template)
        if latest is not None:
            last = str(ckpt.path(latest))
    raise TrainingDiverged(
        f"{what} (epoch {epoch}); last good checkpoint: {last}",
        step=step,
        epoch=epoch,
        checkpoint=last,
    )


def _meta(
    epoch: int,
    step: int,
    es: EarlyStopping,
    best_metrics,
    history,
    stopped: bool,
    config: TrainConfig,
) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "step": step,
        "stopped_early": stopped,
        "early_stopping": es._asdict(),
        "best_metrics": best_metrics,
        "history": [r._asdict() for r in history],
        "trajectory": config.trajectory(),
    }


def _progress(
    record: EpochRecord,
    config: TrainConfig,
    step: int,
    es: EarlyStopping,
    epoch_seconds: list[float],
) -> str:
    """One progress line; the ETA assumes every remaining epoch runs (an upper bound)."""
    line = f"epoch {record.epoch}/{config.max_epochs}  step {step}  loss {record.loss:.6g}"
    if record.metrics is not None:
        line += (
            f"  {config.select_metric} {record.metrics[config.select_metric]:.4f} "
            f"(best {es.best_metric:.4f} @{es.best_epoch})"
        )
    mean = float(np.mean(epoch_seconds[-20:]))
    eta = datetime.timedelta(seconds=round(mean * (config.max_epochs - record.epoch)))
    return line + f"  {record.seconds:.2f} s/epoch  ETA <= {eta}"


# -- the loop -------------------------------------------------------------------------------------


def train(
    model: Trainable,
    data: FitData | SeqFitData,
    config: TrainConfig,
    *,
    key: jax.Array | None = None,
    evaluator: EvaluatorLike | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    devices: list[jax.Device] | None = None,
    source: BatchSource | None = None,
) -> TrainResult:
    """Trains `model` on `data.train`, selecting on `data.valid`, and returns the best params.

    Args:
      model: the model's pure functions.
      data: train (and valid for early stopping). Test is never seen: validation uses an
        evaluator built from `data` alone whose test part is empty, and asks for "valid" only.
        Sequential models pass :class:`~diffrec_jax.protocol.SeqFitData` with their `source`
        and `evaluator`.
      config: batch size, epochs, validation and checkpoint policy.
      key: typed key seeding everything; default ``jax.random.key(config.seed)``.
      evaluator: object with ``evaluate(score_fn, params, parts=("valid",))`` returning
        ``{"valid": result}`` with ``result.summary`` a dict of floats; default
        :func:`validation_evaluator` (when `data.valid` is given).
      on_epoch: called with each :class:`EpochRecord` after the epoch (and its checkpoint).
      devices: devices of the data-parallel mesh; default all devices (of all processes).
      source: the training examples; default :class:`DenseRows` of ``data.train`` (one
        :class:`UserBatch` of dense rows per step). Sequential models pass their examples
        (``diffrec_jax.protocol.SeqExamples``) and a sequence evaluator.

    Returns:
      A :class:`TrainResult`.

    Raises:
      ConfigError: `drop` with fewer users
        than a batch, unknown select_metric, a checkpoint written by another configuration, or
        SeqFitData without a `source`.
      TrainingDiverged: a non-finite loss (the last good checkpoint is kept).
      CheckpointError: `config.checkpoint_dir` has checkpoints but none is intact (each one's
        fault listed). A newer damaged one above an intact one is skipped with a warning and
        set aside as ``<epoch>.corrupt``; training resumes from the intact one.
    """
    # -- Devices and mesh. Batch sharded over "data", everything else replicated.
    mesh = sharding.data_mesh(devices)
    n_devices = mesh.devices.size
    # A batch that does not split evenly gets zero-weight rows (e.g. MultVAE's 500 on 8 TPU
    # cores: 504 rows, 500 examples).
    rows_per_batch = sharding.device_batch_size(config.batch_size, n_devices)
    replicated = sharding.replicated(mesh)

    # -- Randomness: one key for initialisation, one folded with the step, one for the order.
    key = jax.random.key(config.seed) if key is None else key
    init_key, step_key, shuffle_key = jax.random.split(key, 3)
    shuffle_words = seed_words(shuffle_key)
    step_key = sharding.put_replicated(step_key, mesh)

    # -- Input: by default the users of the train matrix, densified batch by batch.
    if source is None:
        if not isinstance(data, FitData):
            raise ConfigError(
                f"train() on {type(data).__name__} needs a source of training examples "
                "(e.g. diffrec_jax.protocol.SeqExamples)"
            )
        source = DenseRows(data.train)
    n_users, n_items = source.n_examples, source.n_items
    n_steps = steps_per_epoch(n_users, config.batch_size, config.last_batch)
    if n_steps == 0:
        raise ConfigError(
            f"TrainConfig.batch_size={config.batch_size} with last_batch='drop' "
            f"leaves no full batch of the {n_users} train users"
        )

    # -- Model and optimiser.
    tx = model.optimizer()
    params, model_state = model.init(init_key, n_items)
    state = TrainState(params, tx.init(params), model_state, jnp.zeros((), jnp.int32))
    state = sharding.put_replicated(strong_types(state), mesh)
    best_params = _copy(state.params)

    # -- The update step: one jitted function, state donated, outputs replicated.
    train_step = jax.jit(make_train_step(model, tx), donate_argnums=0, out_shardings=replicated)

    # -- Checkpoints: resume from the newest one that verifies (checksums of every array and
    # of the metadata, epoch = directory name); newer corrupt ones are logged and set aside.
    es, best_metrics, history, start_epoch, step, stopped = EarlyStopping(), None, [], 0, 0, False
    ckpt = None
    # Shapes, dtypes and shardings only: the state itself is donated to the first step.
    template = Checkpointer.abstract(
        {"state": state, "best_params": best_params, "step_key": step_key}
    )
    if config.checkpoint_dir is not None:
        ckpt = Checkpointer(config.checkpoint_dir, config.keep_checkpoints)

        def same_run(path, meta):
            if meta.get("trajectory") != config.trajectory():
                raise ConfigError(
                    f"checkpoint {path} was written with {meta.get('trajectory')}, this config "
                    f"has {config.trajectory()}; use another checkpoint_dir"
                )

        try:
            found = ckpt.restore_newest_intact(template, check_meta=same_run)
        except BaseException:
            ckpt.close()
            raise
        if found is not None:
            latest, arrays, meta = found
            if seed_words(arrays["step_key"]) != seed_words(step_key):
                ckpt.close()
                raise ConfigError(
                    f"checkpoint {ckpt.path(latest)} was written with "
                    "another key/seed; use another checkpoint_dir"
                )
            state, best_params = arrays["state"], arrays["best_params"]
            es = EarlyStopping(**meta["early_stopping"])
            best_metrics = meta["best_metrics"]
            history = [EpochRecord(**r) for r in meta["history"]]
            start_epoch, step, stopped = latest, meta["step"], meta["stopped_early"]
            logging.info("resumed from %s at epoch %d", ckpt.path(latest), latest)

    # -- Validation on (train, valid) only.
    if evaluator is None and isinstance(data, FitData) and data.valid is not None:
        evaluator = validation_evaluator(data, config)
    validate = evaluator is not None
    if validate and config.max_epochs < config.eval_every:
        logging.warning(
            "max_epochs=%d < eval_every=%d: no validation will run",
            config.max_epochs,
            config.eval_every,
        )

    # -- The epoch loop.
    logging.info(
        "training on %d device(s): %d users x %d items, %d steps/epoch of %d users",
        n_devices,
        n_users,
        n_items,
        n_steps,
        config.batch_size,
    )
    epoch_seconds = [r.seconds for r in history]
    rows = sharding.process_rows(mesh, rows_per_batch)
    try:
        for epoch in range(start_epoch + 1, config.max_epochs + 1):
            if stopped:
                break
            start = time.perf_counter()
            users, weights = epoch_batches(
                n_users,
                config.batch_size,
                epoch=epoch,
                seed_words=shuffle_words,
                shuffle=config.shuffle,
                last_batch=config.last_batch,
            )
            users, weights = pad_batches(users, weights, rows_per_batch)
            epoch_index = np.int32(epoch - 1)
            losses, auxes = [], []
            for batch_users, batch_weights in zip(users, weights, strict=True):
                # This process's rows only (all of them on one host).
                batch = source.batch(batch_users[rows], batch_weights[rows])
                batch = sharding.put_batch(batch, mesh, rows_per_batch)
                state, (loss, aux) = train_step(state, batch, step_key, epoch_index)
                losses.append(loss)
                auxes.append(aux)
                if len(losses) > MAX_STEPS_IN_FLIGHT:
                    # Dispatch is asynchronous: without this the host would densify and queue
                    # a whole epoch of [batch, n_items] inputs ahead of the device.
                    losses[-MAX_STEPS_IN_FLIGHT - 1].block_until_ready()
            epoch_losses = np.asarray(jax.device_get(losses), np.float64)
            bad = np.flatnonzero(~np.isfinite(epoch_losses))
            if bad.size:
                _diverged(
                    f"training loss is {epoch_losses[bad[0]]} at step {step + int(bad[0])}",
                    step + int(bad[0]),
                    epoch,
                    ckpt,
                    template,
                )
            # The last step's update may overflow with a finite loss: never validate or save
            # non-finite parameters.
            if not bool(_all_finite(state.params)):
                last_step = step + len(epoch_losses) - 1
                _diverged(
                    f"training loss is finite but the parameters are not after step {last_step}",
                    last_step,
                    epoch,
                    ckpt,
                    template,
                )
            step += len(epoch_losses)
            auxes = jax.device_get(auxes)
            record = EpochRecord(
                epoch=epoch,
                loss=float(epoch_losses.mean()),
                metrics=None,
                seconds=time.perf_counter() - start,
                aux={name: float(np.mean([a[name] for a in auxes])) for name in auxes[0]},
            )

            if evaluator is not None and epoch % config.eval_every == 0:  # i.e. validate
                # Every process evaluates on its own devices (unchanged on one host).
                params = exported(model, sharding.addressable(state.params))
                metrics = _summary(evaluator, model.score, params, config.select_metric)
                record = record._replace(metrics=metrics)
                es, improved = early_stopping_update(es, metrics[config.select_metric], epoch)
                if improved:
                    best_params, best_metrics = _copy(state.params), metrics
            history.append(record)
            epoch_seconds.append(time.perf_counter() - start)
            stopped = validate and should_stop(es, config.patience)

            if ckpt is not None and (
                epoch % config.checkpoint_every == 0 or stopped or epoch == config.max_epochs
            ):
                ckpt.save(
                    epoch,
                    {"state": state, "best_params": best_params, "step_key": step_key},
                    _meta(epoch, step, es, best_metrics, history, stopped, config),
                )
            if epoch % config.log_every == 0 or record.metrics is not None or stopped:
                logging.info("%s", _progress(record, config, step, es, epoch_seconds))
            if on_epoch is not None:
                on_epoch(record)
    finally:
        if ckpt is not None:
            ckpt.close()

    if stopped:
        logging.info(
            "early stop: no improvement in %d evaluations; best %s %.4f at epoch %d",
            config.patience,
            config.select_metric,
            es.best_metric,
            es.best_epoch,
        )
    if es.best_epoch is None:
        best_params, best_metrics = state.params, None
    return TrainResult(best_params, es.best_epoch, best_metrics, tuple(history), state, stopped)
