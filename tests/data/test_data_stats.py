"""describe() on hand-made data, and format_description."""

from __future__ import annotations

import json

import numpy as np
import pytest

from diffrec_jax.data import (
    InteractionMatrix,
    SequenceDataset,
    Split,
    describe,
    format_description,
)
from diffrec_jax.errors import ConfigError


def hand_matrix(timestamps=None) -> InteractionMatrix:
    # user 0: items 0, 1; user 1: item 1; user 2: nothing. 3 x 4.
    return InteractionMatrix.from_arrays([0, 0, 1], [0, 1, 1], shape=(3, 4), timestamps=timestamps)


def test_describe_matrix():
    d = describe(hand_matrix())
    assert d == {
        "users": 3,
        "items": 4,
        "interactions": 3,
        "density": 0.25,
        "users_with_interactions": 2,
        "items_with_interactions": 2,
        "user_length_min": 0,
        "user_length_mean": 1.0,
        "user_length_median": 1.0,
        "user_length_max": 2,
        "item_count_min": 0,
        "item_count_mean": 0.75,
        "item_count_max": 2,
        "timestamps": False,
    }
    assert all(type(v) in (int, float, bool) for v in d.values())
    assert describe(hand_matrix(np.array([1.0, 2.0, 3.0])))["timestamps"] is True


def test_describe_split_is_json_serialisable():
    train = hand_matrix()
    valid = InteractionMatrix.from_arrays([1], [3], shape=(3, 4))
    test = InteractionMatrix.from_arrays([0, 2], [2, 2], shape=(3, 4))
    d = describe(Split(train, valid, test, name="hand"))
    assert d["name"] == "hand"
    assert (d["users"], d["items"], d["interactions"]) == (3, 4, 6)
    assert d["density"] == 0.5
    assert d["train"] == describe(train)
    assert d["test"]["user_length_max"] == 1 and d["test"]["item_count_max"] == 2
    assert json.loads(json.dumps(d)) == d
    text = format_description(d)
    assert "name:" in text and "hand" in text and "  user_length_mean:" in text
    assert len(text.splitlines()) == 5 + 3 * (1 + len(d["train"]))


def test_describe_sequences():
    data = SequenceDataset(np.array([0, 3, 5]), np.array([0, 2, 0, 1, 1]), 4)
    d = describe(data)
    assert (d["users"], d["items"], d["interactions"]) == (2, 4, 5)
    assert d["density"] == 3 / 8  # distinct (user, item) pairs: repeated events count once
    assert d["repeated_events"] == 2
    assert (d["user_length_min"], d["user_length_median"], d["user_length_max"]) == (2, 2.5, 3)
    assert (d["item_count_min"], d["item_count_max"]) == (0, 2)
    assert d["items_with_interactions"] == 3 and d["timestamps"] is False


def test_density_counts_each_pair_once():
    """Every line doubled on a 1-item catalogue used to give density 3.0 (5 events per cell in
    the sequences; train, valid and test holding the same pair in the split)."""
    seqs = SequenceDataset(np.array([0, 6]), np.zeros(6, np.int64), 1)
    assert describe(seqs)["density"] == 1.0
    split = seqs.leave_one_out().to_split()
    d = describe(split)
    assert d["interactions"] == 3 and d["density"] == 1.0
    for part in ("train", "valid", "test"):
        assert d[part]["density"] <= 1.0


def test_describe_rejects_other_types():
    with pytest.raises(ConfigError, match="describe"):
        describe(np.zeros((2, 2)))
