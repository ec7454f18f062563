"""Interaction data: containers, loaders, public datasets (:mod:`diffrec_jax.data.registry`),
preprocessing, splits, sequences, synthetic data.

Degenerate data that loads but cannot give meaningful metrics is reported with
``warnings.warn(..., DataWarning)`` (:class:`~diffrec_jax.data.guards.DataWarning`, a
``UserWarning``: printed on the console); data that cannot mean anything is refused with a
:class:`~diffrec_jax.errors.DataError`."""

from diffrec_jax.data.datasets import Dataset, load_dataset, prepare_split
from diffrec_jax.data.guards import DataWarning
from diffrec_jax.data.interactions import InteractionLog, InteractionMatrix
from diffrec_jax.data.loaders import (
    DiffRecData,
    load_amazon_reviews,
    load_csv,
    load_diffrec,
    load_diffrec_split,
    load_item_embeddings,
    load_json_lines,
    load_movielens,
    load_recbole_inter,
    load_sequences,
    load_yelp_reviews,
)
from diffrec_jax.data.preprocess import binarize, deduplicate, kcore, to_matrix
from diffrec_jax.data.sequences import SequenceDataset, SequenceSplit
from diffrec_jax.data.split import (
    Split,
    global_temporal,
    holdout_sizes,
    leave_one_out,
    random_holdout,
    temporal_holdout,
)
from diffrec_jax.data.stats import describe, format_description
from diffrec_jax.data.synthetic import synthetic_log, synthetic_sequences

__all__ = [
    "DataWarning",
    "Dataset",
    "DiffRecData",
    "InteractionLog",
    "InteractionMatrix",
    "SequenceDataset",
    "SequenceSplit",
    "Split",
    "binarize",
    "deduplicate",
    "describe",
    "format_description",
    "global_temporal",
    "holdout_sizes",
    "kcore",
    "leave_one_out",
    "load_amazon_reviews",
    "load_csv",
    "load_dataset",
    "load_diffrec",
    "load_diffrec_split",
    "load_item_embeddings",
    "load_json_lines",
    "load_movielens",
    "load_recbole_inter",
    "load_sequences",
    "load_yelp_reviews",
    "prepare_split",
    "random_holdout",
    "synthetic_log",
    "synthetic_sequences",
    "temporal_holdout",
    "to_matrix",
]
