"""Named datasets: one call from a spec string to a ready :class:`Split`.

``load_dataset(spec, seed=0, **options)`` where `spec` is a built-in name or ``kind:path``:

==========================  ==================================================================
``synthetic``               :func:`~diffrec_jax.data.synthetic.synthetic_log`, 2,000 users x
                            1,000 items, mean length 30 (the offline default)
``synthetic-small``         the same generator, 300 users x 200 items, mean length 15 (tests)
``synthetic-sequences``     :func:`~diffrec_jax.data.synthetic.synthetic_sequences`, 1,000
                            users x 500 items, leave-one-out
``diffrec:<folder>``        a DiffRec release folder (the split is taken as released)
``sequences:<file>``        a ``user item`` sequence file, leave-one-out
``recbole:<file>``          a RecBole ``.inter`` file
``movielens:<file>``        MovieLens ``u.data`` / ``ratings.dat`` / ``ratings.csv``
``csv:<file>``              a delimited file with a header (options user_col, item_col, ...)
``amazon:<file>``           Amazon review JSON lines, e.g. ``reviews_Beauty_5.json[.gz]``
``yelp:<file>``             Yelp's ``yelp_academic_dataset_review.json``
``registry:<name>``         a public dataset of :mod:`diffrec_jax.data.registry`, downloaded
                            into the cache on first use (options cache_dir, download); the
                            bare name works too: ``ml-1m``, ``movielens-1m``, ``amazon-beauty``
==========================  ==================================================================

Raw logs (synthetic, recbole, movielens, csv, amazon, yelp, public datasets) go through
:func:`prepare_split`: optional rating threshold, deduplication, optional k-core, contiguous
ids, then a split. Sequence datasets use the sequential leave-one-out protocol and are
converted with :meth:`~diffrec_jax.data.sequences.SequenceSplit.to_split`; the
:class:`SequenceSplit` itself is in ``extras["sequences"]`` for sequential models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from diffrec_jax.data import guards, loaders, preprocess, registry
from diffrec_jax.data import split as splits
from diffrec_jax.data.interactions import InteractionLog
from diffrec_jax.data.sequences import SequenceDataset, SequenceSplit
from diffrec_jax.data.split import Split
from diffrec_jax.data.stats import describe
from diffrec_jax.data.synthetic import synthetic_log, synthetic_sequences
from diffrec_jax.errors import ConfigError, DataError

DEFAULT_RATIOS = (0.7, 0.1, 0.2)
SPLIT_METHODS = ("random", "temporal", "global_temporal", "loo")

BUILTINS: dict[str, dict[str, Any]] = {
    "synthetic": dict(n_users=2000, n_items=1000, mean_length=30.0),
    "synthetic-small": dict(n_users=300, n_items=200, mean_length=15.0),
    "synthetic-sequences": dict(n_users=1000, n_items=500, mean_length=20.0),
}
KINDS = ("diffrec", "sequences", "recbole", "movielens", "csv", "amazon", "yelp", "registry")

_PIPELINE_OPTIONS = (
    "rating_threshold",
    "dedup",
    "kcore",
    "split",
    "ratios",
    "short_users",
    "use_ratings",
)
_SYNTHETIC_OPTIONS = (
    "n_users",
    "n_items",
    "mean_length",
    "n_factors",
    "popularity_exponent",
    "factor_scale",
    "with_ratings",
)
_SEQUENCE_GENERATOR_OPTIONS = (
    "n_users",
    "n_items",
    "mean_length",
    "n_factors",
    "popularity_exponent",
    "transition_scale",
    "user_scale",
)
_CSV_OPTIONS = ("user_col", "item_col", "rating_col", "timestamp_col", "sep")
_REGISTRY_OPTIONS = ("cache_dir", "download")


class Dataset(NamedTuple):
    """A loaded dataset.

    Attributes:
      name: the dataset name (also `split.name`).
      split: the train / valid / test split; `split.history` lists every step.
      stats: :func:`~diffrec_jax.data.stats.describe` of the split.
      extras: kind-specific data: ``item_emb`` ([n_items, d] float32) for DiffRec folders that
        have one, ``sequences`` (the :class:`SequenceSplit`) for sequence datasets.
    """

    name: str
    split: Split
    stats: dict
    extras: dict


def available() -> str:
    """A one-line list of the accepted specs, for messages."""
    return (
        f"built-in names {', '.join(BUILTINS)}; public datasets {registry.available()} (or "
        f"registry:<name>); or kind:path with kind one of {', '.join(KINDS[:-1])}"
    )


def prepare_split(
    log: InteractionLog,
    *,
    name: str,
    seed: int = 0,
    rating_threshold: float | None = None,
    dedup: str = "last",
    kcore: int | tuple[int, int] = 0,
    split: str = "random",
    ratios=DEFAULT_RATIOS,
    short_users: str = "raise",
    use_ratings: bool = False,
) -> Split:
    """The default pipeline from a raw log to a split.

    Steps: ``binarize(log, rating_threshold)`` if a threshold is given; ``deduplicate(log,
    dedup)``; ``kcore(log, k, k)`` (or ``(user_k, item_k)``) if k > 0; ``to_matrix`` (values 1,
    or ratings with `use_ratings`); then `split`: "random" (:func:`random_holdout` with `ratios`
    and `seed`), "temporal" (:func:`temporal_holdout`), "global_temporal"
    (:func:`global_temporal`) or "loo" (:func:`leave_one_out` with `short_users`, "raise" or
    "train"). The history of the result lists every step.
    """
    if split not in SPLIT_METHODS:
        raise ConfigError(f"split={split!r}; expected one of {', '.join(SPLIT_METHODS)}")
    if rating_threshold is not None:
        if log.ratings is None:
            raise DataError(
                f"rating_threshold={rating_threshold} needs ratings, but the data has no rating "
                "column; expected no threshold for implicit data",
                path=log.source,
            )
        before, ratings = log, log.ratings
        log = preprocess.binarize(log, float(rating_threshold))
        if len(log) == 0 and len(before):
            raise DataError(
                f"rating_threshold={rating_threshold} removed every row (ratings range from "
                f"{ratings.min():g} to {ratings.max():g}); expected a threshold "
                "that keeps some interactions",
                path=log.source,
            )
    log = preprocess.deduplicate(log, dedup)
    if isinstance(kcore, tuple | list):
        if len(kcore) != 2:
            raise ConfigError(f"kcore={kcore!r}; expected an integer or (user_k, item_k)")
        user_k, item_k = kcore
    else:
        user_k = item_k = kcore
    if user_k or item_k:
        n_rows = len(log)
        log = preprocess.kcore(log, user_k, item_k)
        if len(log) == 0 and n_rows:
            raise DataError(
                f"kcore={kcore!r} removed all {n_rows} rows; expected a smaller k (no "
                f"({user_k}, {item_k})-core exists in this data)",
                path=log.source,
            )
    m = preprocess.to_matrix(log, use_ratings=use_ratings)
    if use_ratings:
        ratings = np.asarray(m.csr.data)
        zero = int(np.count_nonzero(ratings == 0))
        if zero == len(ratings):
            raise DataError(
                f"use_ratings=True but every one of the {zero} ratings is 0, so every "
                "interaction would weigh 0 and no model can learn anything; expected non-zero "
                "ratings (or use_ratings=False for implicit feedback)",
                path=log.source,
            )
        if zero:
            guards.warn(
                f"{log.source}: use_ratings=True and {zero} of {len(ratings)} ratings are 0; "
                "those interactions weigh 0 (they still count as seen items)"
            )
    values = "ratings" if use_ratings else "1 (implicit)"
    history = log.history + (
        f"to_matrix: {m.n_users} users x {m.n_items} items, {m.nnz} "
        f"interactions, values {values}, ids in sorted raw-id order",
    )
    if split == "random":
        return splits.random_holdout(m, ratios, seed, name=name, history=history)
    if split == "temporal":
        return splits.temporal_holdout(m, ratios, name=name, history=history)
    if split == "global_temporal":
        return splits.global_temporal(m, ratios, name=name, history=history)
    return splits.leave_one_out(m, short_users=short_users, name=name, history=history)


# Options each kind accepts besides `name` (checked before anything is loaded).
_OPTIONS: dict[str, tuple[str, ...]] = {
    "synthetic": _SYNTHETIC_OPTIONS + _PIPELINE_OPTIONS,
    "synthetic-sequences": _SEQUENCE_GENERATOR_OPTIONS + ("short_users",),
    "diffrec": (),
    "sequences": ("short_users",),
    "recbole": _PIPELINE_OPTIONS,
    "movielens": ("format",) + _PIPELINE_OPTIONS,
    "csv": _CSV_OPTIONS + _PIPELINE_OPTIONS,
    "amazon": _PIPELINE_OPTIONS,
    "yelp": _PIPELINE_OPTIONS,
}


def _check_options(kind: str, options: dict, public: bool = False) -> None:
    allowed = ("name",) + _OPTIONS[kind] + (_REGISTRY_OPTIONS if public else ())
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for {kind} datasets; accepted: "
            f"{', '.join(allowed)}"
        )


def _take(options: dict, keys: tuple[str, ...]) -> dict:
    return {k: options.pop(k) for k in keys if k in options}


def warn_degenerate(split: Split, sequences: SequenceSplit | None = None) -> None:
    """Issues a :class:`~diffrec_jax.data.guards.DataWarning` for data that loads but whose
    metrics cannot mean much: a one-item catalogue (every ranking of one item is trivial), a
    single user (every average is that user's value), and for sequences, test targets that
    mostly equal the validation target (typically every line of the file written twice)."""
    where = f"dataset {split.name!r}"
    if split.n_items == 1:
        guards.warn(
            f"{where} has a catalogue of 1 item: there is nothing to rank (with train items "
            "masked every ranking metric is 0, unmasked it is trivially 1); expected at least 2 "
            "items"
        )
    if split.n_users == 1:
        guards.warn(
            f"{where} has a single user: every metric is that one user's value (0 or 1 for "
            "hit rates); expected many users"
        )
    if sequences is not None and sequences.n_users:
        same = int(np.sum(sequences.valid_targets == sequences.test_targets))
        if same * 2 > sequences.n_users:
            guards.warn(
                f"{where}: the test target equals the valid target for {same} of "
                f"{sequences.n_users} users (is every line of {sequences.sequences.source} "
                "repeated?); the test then only repeats the validation"
            )


def _from_sequences(seqs: SequenceDataset, name: str, options: dict) -> Dataset:
    seq_split = seqs.leave_one_out(short_users=options.get("short_users", "raise"), name=name)
    split = seq_split.to_split()
    warn_degenerate(split, seq_split)
    return Dataset(name, split, describe(split), {"sequences": seq_split})


def _from_log(log: InteractionLog, name: str, seed: int, options: dict) -> Dataset:
    split = prepare_split(log, name=name, seed=seed, **options)
    warn_degenerate(split)
    return Dataset(name, split, describe(split), {})


def load_dataset(spec: str, *, seed: int = 0, **options) -> Dataset:
    """Loads a dataset by name or ``kind:path`` (see the module docstring).

    Args:
      spec: a built-in name or ``kind:path``.
      seed: seed of the synthetic generators and of the random split.
      **options: `name` (overrides the dataset name); for public datasets `cache_dir` (the
        cache root, see :func:`diffrec_jax.data.registry.cache_dir`) and `download` (False:
        use the cache only); for raw logs the pipeline options of
        :func:`prepare_split` (rating_threshold, dedup, kcore, split, ratios, short_users,
        use_ratings); for synthetic names the generator's arguments; for ``csv`` user_col,
        item_col (required), rating_col, timestamp_col, sep; for ``movielens`` format; for
        sequence datasets short_users ("raise" or "drop").

    Raises:
      ConfigError: unknown name, kind or option (checked before loading anything).
      DataError: bad file content; a public dataset that cannot be downloaded (the message
        names the URL and where to place the file by hand).
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed={seed!r}; expected a non-negative integer")
    public = None
    if spec in BUILTINS:
        kind, path = ("synthetic-sequences" if spec == "synthetic-sequences" else "synthetic"), ""
    else:
        kind, colon, path = spec.partition(":")
        if not colon and registry.lookup(spec) is not None:
            kind, path = "registry", spec
        if kind == "registry":
            public = registry.get(path)
            kind = public.kind
        elif not colon or kind not in KINDS or not path:
            raise ConfigError(f"unknown dataset {spec!r}; expected {available()}")
    _check_options(kind, options, public is not None)
    options = dict(options)
    name = options.pop("name", None)
    if public is not None:
        download = options.pop("download", True)
        if not isinstance(download, bool):
            raise ConfigError(f"download={download!r}; expected True or False")
        p = registry.fetch(
            public, cache_dir=options.pop("cache_dir", None), download_missing=download
        )
        name = name or public.name
    else:
        p = Path(path)
    if kind == "synthetic-sequences":
        params = {**BUILTINS[spec], **_take(options, _SEQUENCE_GENERATOR_OPTIONS)}
        return _from_sequences(synthetic_sequences(**params, seed=seed), name or spec, options)
    if kind == "synthetic":
        params = {**BUILTINS[spec], **_take(options, _SYNTHETIC_OPTIONS)}
        return _from_log(synthetic_log(**params, seed=seed), name or spec, seed, options)
    if kind == "diffrec":
        data = loaders.load_diffrec(p)
        split = data.split
        if name:
            split = Split(split.train, split.valid, split.test, name, split.history)
        extras = {} if data.item_emb is None else {"item_emb": data.item_emb}
        warn_degenerate(split)
        return Dataset(split.name, split, describe(split), extras)
    if kind == "sequences":
        default = p.parent.name if p.stem == "sequences" and p.parent.name else p.stem
        return _from_sequences(loaders.load_sequences(p), name or default, options)
    if kind == "recbole":
        return _from_log(loaders.load_recbole_inter(p), name or p.stem, seed, options)
    if kind == "movielens":
        fmt = options.pop("format", None)
        default = p.parent.name or p.stem
        return _from_log(loaders.load_movielens(p, format=fmt), name or default, seed, options)
    if kind in ("amazon", "yelp"):
        read = loaders.load_amazon_reviews if kind == "amazon" else loaders.load_yelp_reviews
        return _from_log(read(p), name or p.name.split(".")[0], seed, options)
    csv_options = _take(options, _CSV_OPTIONS)
    for required in ("user_col", "item_col"):
        if required not in csv_options:
            raise ConfigError(
                f"csv datasets need the option {required}; accepted: {', '.join(_CSV_OPTIONS)}"
            )
    return _from_log(loaders.load_csv(p, **csv_options), name or p.stem, seed, options)
