"""Layer 2: the evaluation protocol (with :mod:`diffrec_jax.metrics`), one for every model.

- :class:`Evaluator`: row models on a :class:`~diffrec_jax.data.split.Split` (valid: train rows
  in, train masked; test: train rows in, train and valid masked; full ranking).
- :class:`SequenceEvaluator`: sequential models, leave-one-out (valid ``seq[:-2]``, test
  ``seq[:-1]``), full ranking, history items optionally excluded.
- :func:`~diffrec_jax.evaluation.topk_loop.collect_top_items`: the pipelined batch loop both
  share.
"""

from __future__ import annotations

from diffrec_jax.evaluation.rows import PARTS, Evaluator, ScoreFn, evaluate_split
from diffrec_jax.evaluation.sequences import SEQ_KS, SeqScoreFn, SequenceEvaluator
from diffrec_jax.evaluation.topk_loop import collect_top_items

__all__ = [
    "PARTS",
    "SEQ_KS",
    "Evaluator",
    "ScoreFn",
    "SeqScoreFn",
    "SequenceEvaluator",
    "collect_top_items",
    "evaluate_split",
]
