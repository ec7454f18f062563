"""Full-ranking top-K evaluation: accuracy and beyond-accuracy metrics under named conventions.

:func:`evaluate` ranks every item for every user that has truth, never recommending the items in
`exclude`, and computes the metrics below at every K in `ks`. :func:`evaluate_top_items` computes
the same metrics from ready top-K lists. :class:`diffrec_jax.evaluation.Evaluator` runs the
train/valid/test protocol of a :class:`~diffrec_jax.data.split.Split` on top of these.

Ranking. Excluded items get score -inf before top-K. If K exceeds the number of rankable items of
a user, the positions filled with excluded items are invalid: neither hits nor recommendations
(-1 in `EvalResult.top_items`). Ties: among equal scores the LOWER item index ranks first
(what `jax.lax.top_k` does; identical to ``np.argsort(-scores, kind="stable")``; -0.0 counts as
+0.0, and a model's own -inf score still ranks above every excluded item). Scores are ranked in
float32 unless jax_enable_x64 is on (so float64 scores closer than float32 resolution tie).
K larger than the catalogue is clipped to n_items (the summary key keeps the requested K).
Users without truth (T = 0) are not ranked; their per-user values are NaN. With no evaluated
user at all, accuracy summaries are NaN (0 under "diffrec", a sum of nothing over all users).

Notation: r_i = 1 if the item at rank i (1-based) is relevant, hits = sum_{i<=K} r_i,
T = number of relevant items of the user (all of them, including any that are excluded),
DCG = sum_{i<=K} r_i / log2(i + 1), IDCG(n) = sum_{i=1..n} 1 / log2(i + 1), P@j = (sum_{i<=j}
r_i) / j, n_rec = number of valid recommendations in the top K.

=========== ========================== ============================ ==========================
metric      "recbole" (default)        "diffrec"                    "recsys2019"
=========== ========================== ============================ ==========================
Recall@K    hits / T                   hits / T                     hits / T
Precision@K hits / K                   hits / K                     hits / n_rec (0 if n_rec=0)
NDCG@K      DCG / IDCG(min(K, T))      DCG / IDCG(min(K, T))        DCG / IDCG(T) (untruncated)
HitRate@K   1 if hits > 0 else 0       [1 if hits > 0]              hits (number of hits)
MRR@K       1 / rank of first hit (0)  1 / rank of first hit (0)    1 / rank of first hit (0)
MAP@K       sum_j r_j P@j / min(K, T)  [sum_j r_j P@j / min(K, T)]  sum_j r_j P@j / min(K, T)
averaging   mean over users with T > 0 sum over users with T > 0,   mean over users with T > 0
                                       divided by ALL users
=========== ========================== ============================ ==========================

- "recbole": RecBole 1.2.
- "diffrec": the original DiffRec code (Wang et al. 2023, ``computeTopNAccuracy``), which has no
  HitRate or MAP; the bracketed entries are our choice: the RecBole per-user definition with the
  DiffRec averaging (sum over users with T > 0 divided by all users). "All users" is the number
  of rows of the score/truth matrix (the Evaluator: every user of the split).
- "recsys2019": the evaluation repository of Ferrari Dacrema et al. (RecSys 2019). Its NDCG uses
  gain 2^rel - 1 and natural logs; with binary relevance the gain is r_i and the log base
  cancels in DCG / IDCG, so only the untruncated IDCG differs from RecBole.

Beyond accuracy, identical under every convention (the convention's averaging applies to the
accuracy metrics only):

- Coverage@K: share of the catalogue recommended (at a valid position) to at least one
  evaluated user.
- Gini@K: Gini index of the recommendation counts over all items, never-recommended items
  included as 0 (RecBole's GiniIndex): sum_i (2i - n - 1) c_(i) / (n sum_i c_i), counts
  ascending; 0 = uniform, (n - 1)/n = one item only.
- Novelty@K (needs item_popularity): per user, mean over the valid recommended items of
  -log2(p_i), p_i = item_popularity[i] / n_users (the share of users who interacted, n_users =
  rows of the score matrix, the train user count). An item with p_i = 0 (unseen in train) gets
  the self-information of an item seen once, log2(n_users), instead of +inf.
- AvgPop@K (needs item_popularity): per user, mean item_popularity of the valid recommended
  items (RecBole's AveragePopularity when the list is full).

Novelty and AvgPop are averaged over evaluated users with a non-empty list and omitted when
item_popularity is None; Coverage and Gini have no per-user values.
"""

from collections.abc import Sequence

from diffrec_jax.metrics._evaluate import (
    BEYOND_METRICS,
    EvalResult,
    evaluate,
    evaluate_top_items,
    top_items_of_scores,
)
from diffrec_jax.metrics._ranking import ACCURACY_METRICS, CONVENTIONS
from diffrec_jax.metrics._topk import default_batch_size, masked_top_k, masked_top_k_impl

SELECTABLE_METRICS = ("Recall", "Precision", "NDCG", "HitRate", "MRR", "MAP")
"""Accuracy metrics a run or study may select on, at each of its cutoffs."""


def metric_names(ks: Sequence[int]) -> list[str]:
    """The summary keys ``"<metric>@<k>"`` of :data:`SELECTABLE_METRICS` at the cutoffs `ks`."""
    return [f"{m}@{k}" for m in SELECTABLE_METRICS for k in ks]


__all__ = [
    "ACCURACY_METRICS",
    "BEYOND_METRICS",
    "CONVENTIONS",
    "EvalResult",
    "SELECTABLE_METRICS",
    "default_batch_size",
    "metric_names",
    "evaluate",
    "evaluate_top_items",
    "masked_top_k",
    "masked_top_k_impl",
    "top_items_of_scores",
]
