"""load_dataset: built-in names, every kind on small files, options and errors."""

from __future__ import annotations

import numpy as np
import pytest
from data_fixtures import pairs, shared, write

from diffrec_jax.data import Dataset, describe, load_dataset
from diffrec_jax.errors import ConfigError, DataError


def same_split(a, b) -> bool:
    return all(pairs(getattr(a, p)) == pairs(getattr(b, p)) for p in ("train", "valid", "test"))


def test_synthetic_small_defaults():
    ds = load_dataset("synthetic-small")
    assert isinstance(ds, Dataset)
    assert ds.name == ds.split.name == "synthetic-small"
    assert ds.split.train.shape == (300, 200)
    assert ds.stats == describe(ds.split)
    assert "synthetic_log" in ds.split.history[0] and "random_holdout" in ds.split.history[-1]
    total = ds.stats["interactions"]
    assert abs(ds.stats["test"]["interactions"] / total - 0.2) < 0.03
    assert same_split(ds.split, load_dataset("synthetic-small").split)
    assert not same_split(ds.split, load_dataset("synthetic-small", seed=1).split)


@pytest.mark.parametrize(
    "method, marker",
    [
        ("temporal", "temporal_holdout"),
        ("global_temporal", "global_temporal"),
        ("loo", "leave_one_out"),
    ],
)
def test_synthetic_small_split_methods(method, marker):
    ds = load_dataset("synthetic-small", split=method, n_users=50, name="tiny")
    assert ds.name == "tiny" and marker in ds.split.history[-1]
    if method == "loo":
        assert np.all(ds.split.test.user_lengths() == 1)


def test_synthetic_sequences_builtin():
    ds = load_dataset("synthetic-sequences", n_users=100, n_items=60, mean_length=8.0)
    seq = ds.extras["sequences"]
    assert ds.split.n_users == seq.n_users == 100
    assert np.all(ds.split.test.user_lengths() == 1)


def test_unknown_names_kinds_and_options():
    with pytest.raises(ConfigError, match="synthetic-small") as info:
        load_dataset("nope")
    assert "diffrec" in str(info.value)
    with pytest.raises(ConfigError, match="unknown dataset"):
        load_dataset("parquet:/x")
    with pytest.raises(ConfigError, match="bogus"):
        load_dataset("synthetic-small", bogus=1)
    with pytest.raises(ConfigError, match="split="):
        load_dataset("synthetic-small", split="kfold")
    with pytest.raises(ConfigError, match="ratios"):
        load_dataset("synthetic-small", ratios=(0.5, 0.5, 0.5))


def test_raw_log_kinds(tmp_path):
    rows = [
        (u, i, 1 + (u * i) % 5, 1000 + 10 * u + i)
        for u in range(1, 13)
        for i in range(1, 9)
        if (u + i) % 3
    ]
    (tmp_path / "ml-tiny").mkdir()
    u_data = write(
        tmp_path / "ml-tiny", "u.data", "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows)
    )
    inter = write(
        tmp_path,
        "tiny.inter",
        "user_id:token\titem_id:token\trating:float\t"
        "timestamp:float\n" + "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows),
    )
    csv = write(
        tmp_path, "tiny.csv", "ts,u,i,r\n" + "".join(f"{t},{u},{i},{r}\n" for u, i, r, t in rows)
    )
    results = {
        "movielens": load_dataset(f"movielens:{u_data}", rating_threshold=3, split="temporal"),
        "recbole": load_dataset(f"recbole:{inter}", rating_threshold=3, split="temporal"),
        "csv": load_dataset(
            f"csv:{csv}",
            user_col="u",
            item_col="i",
            rating_col="r",
            timestamp_col="ts",
            rating_threshold=3,
            split="temporal",
        ),
    }
    assert [r.name for r in results.values()] == ["ml-tiny", "tiny", "tiny"]
    kept = {(u, i) for u, i, r, _ in rows if r >= 3}
    for ds in results.values():
        s = ds.split
        got = {
            (int(s.train.user_ids[u]), int(s.train.item_ids[i]))
            for m in (s.train, s.valid, s.test)
            for u, i in pairs(m)
        }
        assert got == kept
        assert any("binarize" in h for h in s.history)
    assert same_split(results["movielens"].split, results["recbole"].split)
    assert same_split(results["recbole"].split, results["csv"].split)
    with pytest.raises(ConfigError, match="user_col"):
        load_dataset(f"csv:{csv}", item_col="i")
    with pytest.raises(ConfigError, match="format"):
        load_dataset(f"csv:{csv}", user_col="u", item_col="i", format="x")


def test_kcore_and_dedup_options(tmp_path):
    text = (
        "u,i,t\n"
        + "".join(f"{u},{i},{u + i}\n" for u in range(6) for i in range(6) if i <= u)
        + "5,5,99\n"
    )
    path = write(tmp_path, "tri.csv", text)
    with pytest.raises(DataError, match="repeats row"):
        load_dataset(f"csv:{path}", user_col="u", item_col="i", timestamp_col="t", dedup="error")
    ds = load_dataset(f"csv:{path}", user_col="u", item_col="i", timestamp_col="t", kcore=3)
    # lower triangle (item <= user) of 6 x 6: the 3-core is users 2..5 x items 0..3, i <= u
    assert ds.split.train.user_ids.tolist() == [2, 3, 4, 5]
    assert ds.split.train.item_ids.tolist() == [0, 1, 2, 3]
    assert ds.stats["interactions"] == 3 + 4 + 4 + 4
    assert any("kcore(user_k=3, item_k=3" in h for h in ds.split.history)


def test_diffrec_and_sequences_kinds(tmp_path):
    folder = tmp_path / "toy-diffrec"
    folder.mkdir()
    np.save(folder / "train_list.npy", np.array([[0, 0], [0, 1], [1, 1], [1, 2]]))
    np.save(folder / "valid_list.npy", np.array([[0, 2]]))
    np.save(folder / "test_list.npy", np.array([[1, 0]]))
    ds = load_dataset(f"diffrec:{folder}")
    assert ds.name == "toy-diffrec" and ds.extras == {}
    assert pairs(ds.split.test) == {(1, 0)}
    with pytest.raises(ConfigError, match="unknown option.*split"):
        load_dataset(f"diffrec:{folder}", split="temporal")
    # options are checked before any file is read
    with pytest.raises(ConfigError, match="unknown option"):
        load_dataset(f"recbole:{tmp_path / 'missing.inter'}", rating_treshold=4)
    (tmp_path / "beauty").mkdir()
    seq = write(tmp_path / "beauty", "sequences.txt", "1 1\n1 2\n1 3\n2 3\n2 1\n2 2\n2 4\n3 1\n")
    with pytest.raises(DataError, match="has 1 items"):
        load_dataset(f"sequences:{seq}")
    ds = load_dataset(f"sequences:{seq}", short_users="drop")
    assert ds.name == "beauty" and ds.split.n_users == 2
    assert ds.extras["sequences"].test_targets.tolist() == [2, 3]  # items 3 and 4 (0-based)


def test_real_diffrec_dataset():
    ds = load_dataset(f"diffrec:{shared('diffrec-ml-1m_clean')}")
    assert ds.name == "diffrec-ml-1m_clean"
    assert ds.extras["item_emb"].shape == (2810, 64)
    assert (ds.stats["users"], ds.stats["items"], ds.stats["interactions"]) == (
        5949,
        2810,
        403277 + 110722 + 57532,
    )


def test_real_sequences_dataset():
    ds = load_dataset(f"sequences:{shared('adrec-ml-100k/sequences.txt')}")
    assert ds.name == "adrec-ml-100k"
    assert ds.split.valid.nnz == ds.split.test.nnz == 938
    assert ds.split.train.nnz == 54413 - 2 * 938
