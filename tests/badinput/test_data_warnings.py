"""Degenerate data that loads is reported with a DataWarning naming the problem (project issue
18: nothing passes silently); the memory guards refuse before allocating."""

from __future__ import annotations

import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import scipy.sparse as sp

from diffrec_jax.data import DataWarning, guards, load_dataset, loaders
from diffrec_jax.errors import ConfigError
from diffrec_jax.models.ease import ease_weights


def write(tmp: Path, name: str, content: str) -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


def data_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, DataWarning)]


def test_data_warning_is_a_visible_user_warning():
    assert issubclass(DataWarning, UserWarning)
    assert "console" in (guards.__doc__ or "") and "DataWarning" in (guards.__doc__ or "")


def test_one_item_catalogue_warns(tmp_path):
    path = write(tmp_path, "x.csv", "u,i\n" + "".join(f"{u},7\n" for u in range(20)))
    with pytest.warns(DataWarning, match="catalogue of 1 item") as record:
        load_dataset(f"csv:{path}", user_col="u", item_col="i")
    assert any("'x'" in m and "nothing to rank" in m for m in data_warnings(record))


def test_single_user_warns(tmp_path):
    path = write(tmp_path, "x.csv", "u,i\n" + "".join(f"5,{i}\n" for i in range(20)))
    with pytest.warns(DataWarning, match="single user") as record:
        load_dataset(f"csv:{path}", user_col="u", item_col="i")
    assert any("every metric is that one user's value" in m for m in data_warnings(record))


def test_every_sequence_line_doubled_warns(tmp_path):
    lines = [f"{u} {i}\n" for u in range(1, 6) for i in range(1, 6)]
    path = write(tmp_path, "beauty/seq.txt", "".join(line * 2 for line in lines))
    with pytest.warns(DataWarning, match="test target equals the valid target for 5 of 5") as rec:
        data = load_dataset(f"sequences:{path}")
    assert any("repeated?" in m and "seq.txt" in m for m in data_warnings(rec))
    assert data.stats["density"] <= 1.0


def test_doubled_lines_on_one_item_had_density_3(tmp_path):
    path = write(tmp_path, "seq.txt", "1 4\n1 4\n1 4\n2 4\n2 4\n2 4\n")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        data = load_dataset(f"sequences:{path}")
    assert data.stats["density"] == 1.0
    messages = data_warnings(record)
    assert any("catalogue of 1 item" in m for m in messages)
    assert any("test target equals the valid target for 2 of 2" in m for m in messages)


def test_some_zero_ratings_with_use_ratings_warn(tmp_path):
    rows = "".join(f"{u},{i},{(u + i) % 5}\n" for u in range(10) for i in range(10))
    path = write(tmp_path, "x.csv", "u,i,r\n" + rows)
    with pytest.warns(DataWarning, match=r"use_ratings=True and 20 of 100 ratings are 0"):
        load_dataset(f"csv:{path}", user_col="u", item_col="i", rating_col="r", use_ratings=True)


def test_ordinary_data_gives_no_data_warning():
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        load_dataset("synthetic-small")
        load_dataset("synthetic-sequences", n_users=50, n_items=40)
    assert data_warnings(record) == []


# -- memory guards and safe pair keys -------------------------------------------------------------


def test_format_bytes():
    assert guards.format_bytes(512) == "512 bytes"
    assert guards.format_bytes(200_001**2 * 8) == "298.0 GiB"
    assert guards.format_bytes(2**70).endswith("EiB")


def test_unknown_available_memory_never_refuses():
    with mock.patch.object(guards, "available_memory", return_value=None):
        assert guards.exceeds_memory(1e30) == (False, "available memory unknown")
    assert guards.available_memory() is None or guards.available_memory() > 0


def test_ease_refuses_before_allocating_the_gram_matrix():
    x = sp.csr_array(np.eye(3, 5000, dtype=np.float32))
    with mock.patch.object(guards, "available_memory", return_value=2**20):
        with mock.patch("diffrec_jax.models.ease.knn_gram") as gram:
            with pytest.raises(ConfigError, match=r"n_items=5,000 .* 190\.7 MiB"):
                ease_weights(x, 10.0)
    gram.assert_not_called()
    assert ease_weights(sp.csr_array(np.eye(4, 3, dtype=np.float32)), 1.0).shape == (3, 3)


def test_pair_keys_do_not_overflow_on_huge_ids():
    big = 2**62
    train = np.array([[0, 4], [4, 0], [1, big]], np.int64)
    # The old keys user * (largest item + 1) + item wrap around int64: (4, 0) -> 4 * (2**62 + 1)
    # = 2**64 + 4, the key of (0, 4): a false duplicate row.
    with np.errstate(over="ignore"):
        old = train[:, 0] * np.int64(big + 1) + train[:, 1]
    assert old[0] == old[1]
    parts = {"train": train, "valid": np.array([[2**62 + 5, 3], [0, 4]], np.int64)}
    keys = loaders._pair_keys(parts)
    assert len(np.unique(keys["train"])) == 3
    assert loaders._first_duplicate(keys["train"]) is None
    assert keys["valid"][1] == keys["train"][0] and keys["valid"][0] not in keys["train"]
