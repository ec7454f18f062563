"""Loaders: good files, every kind of bad file, and the real files when present."""

from __future__ import annotations

import numpy as np
import pytest
from data_fixtures import entries, pairs, shared, write

from diffrec_jax.data import (
    load_csv,
    load_diffrec,
    load_diffrec_split,
    load_item_embeddings,
    load_movielens,
    load_recbole_inter,
    load_sequences,
)
from diffrec_jax.errors import ConfigError, DataError


def assert_data_error(fn, path, where: str, *words: str) -> DataError:
    """Runs fn, expects a DataError naming the file, `where` ("line 3", "row 2") and words."""
    with pytest.raises(DataError) as info:
        fn(path)
    message = str(info.value)
    assert path.name in message, message
    if where:
        assert where in message, message
    for w in words:
        assert w in message, message
    return info.value


# -- sequences ----------------------------------------------------------------------------------


def test_load_sequences_keeps_per_user_order_of_appearance(tmp_path):
    path = write(tmp_path, "seq.txt", "30 7\n10 5\n30 100\n10 6\n30 7\n20 1\n10 8\n20 2\n20 3\n")
    data = load_sequences(path)
    assert data.user_ids.tolist() == [10, 20, 30]
    assert data.item_ids.tolist() == [1, 2, 3, 5, 6, 7, 8, 100]
    raw = {
        int(data.user_ids[u]): data.item_ids[data.sequence(u)].tolist() for u in range(data.n_users)
    }
    assert raw == {10: [5, 6, 8], 20: [1, 2, 3], 30: [7, 100, 7]}
    assert data.lengths().tolist() == [3, 3, 3]
    assert data.timestamps is None
    assert "1 repeated" in data.history[-1]


def test_load_sequences_accepts_crlf_and_trailing_blank_lines(tmp_path):
    path = write(tmp_path, "seq.txt", "1 2\r\n1 3\r\n2 2\r\n\n\n")
    assert len(load_sequences(path).items) == 3


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("1 2\n1 2 3\n", 2, ("expected 2 columns", "got 3")),
        ("1 2\n1\n", 2, ("got 1",)),
        ("1 2\n\n1 3\n", 2, ("got 0",)),
        ("1,2\n", 1, ("got 1",)),  # wrong delimiter
        ("1 2\n1 x\n", 2, ("item id", "not an integer")),
        ("1 2.0\n", 1, ("not an integer",)),
        ("1.5 2\n", 1, ("user id",)),
        ("1 2\n-1 3\n", 2, ("negative",)),
        ("1 2\n1 nan\n", 2, ("not an integer",)),
        ("1 99999999999999999999\n", 1, ("int64",)),
    ],
)
def test_load_sequences_bad_lines(tmp_path, text, line, words):
    path = write(tmp_path, "seqs.txt", text)
    assert_data_error(load_sequences, path, f"line {line}", *words)


@pytest.mark.parametrize("text", ["", "\n\n", "   \n"])
def test_load_sequences_empty_file(tmp_path, text):
    path = write(tmp_path, "empty.txt", text)
    assert_data_error(load_sequences, path, "", "empty")


def test_load_sequences_missing_file(tmp_path):
    assert_data_error(load_sequences, tmp_path / "nope.txt", "", "cannot read")


def test_load_sequences_non_utf8(tmp_path):
    path = tmp_path / "bin.txt"
    path.write_bytes(b"1 2\n1 \xff\n")
    assert_data_error(load_sequences, path, "line 2", "UTF-8")


# -- RecBole ------------------------------------------------------------------------------------

RECBOLE_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def test_load_recbole_inter_good(tmp_path):
    text = (
        RECBOLE_HEADER.replace("\n", "\treview:token_seq\n")
        + "196\t242\t3\t881250949\tgood film\n186\t302\t3.5\t891717742\tmeh\n"
    )
    log = load_recbole_inter(write(tmp_path, "x.inter", text))
    assert log.users.tolist() == [196, 186]
    assert log.items.tolist() == [242, 302]
    assert log.ratings.tolist() == [3.0, 3.5]
    assert log.timestamps.tolist() == [881250949.0, 891717742.0]
    assert "review" in log.history[-1]


def test_load_recbole_inter_optional_columns(tmp_path):
    log = load_recbole_inter(write(tmp_path, "x.inter", "item_id:token\tuser_id:token\n5\t1\n"))
    assert log.users.tolist() == [1] and log.items.tolist() == [5]
    assert log.ratings is None and log.timestamps is None


@pytest.mark.parametrize(
    "text, line, words",
    [
        (RECBOLE_HEADER + "1\t2\t3\t4\nu1\t2\t3\t4\n", 3, ("user_id", "'u1'", "not an integer")),
        (RECBOLE_HEADER + "1\t2.5\t3\t4\n", 2, ("item_id",)),
        (RECBOLE_HEADER + "1\t2\tnan\t4\n", 2, ("rating", "not finite")),
        (RECBOLE_HEADER + "1\t2\t3\tinf\n", 2, ("timestamp", "not finite")),
        (RECBOLE_HEADER + "1\t2\tgood\t4\n", 2, ("rating", "not a number")),
        (RECBOLE_HEADER + "1\t2\t3\t4\n1\t2\t3\n", 3, ("expected 4 columns", "got 3")),
        (RECBOLE_HEADER + "1 2 3 4\n", 2, ("got 1",)),  # spaces instead of tabs
        (RECBOLE_HEADER + "1\t-2\t3\t4\n", 2, ("negative",)),
        (RECBOLE_HEADER, 1, ("no data rows",)),
        ("user_id:token\titem_id:token\trating:double\n1\t2\t3\n", 1, ("unknown type", "double")),
        ("user_id:token\trating:float\n1\t2\n", 1, ("item_id",)),
        ("user_id\titem_id:token\n1\t2\n", 1, ("name:type",)),
    ],
)
def test_load_recbole_inter_bad(tmp_path, text, line, words):
    assert_data_error(
        load_recbole_inter, write(tmp_path, "bad.inter", text), f"line {line}", *words
    )


def test_load_recbole_inter_empty(tmp_path):
    assert_data_error(load_recbole_inter, write(tmp_path, "e.inter", ""), "", "empty")


# -- MovieLens ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, text",
    [
        ("u.data", "1\t10\t4\t100\n2\t20\t5\t200\n"),
        ("ratings.dat", "1::10::4::100\n2::20::5::200\n"),
        ("ratings.csv", "userId,movieId,rating,timestamp\n1,10,4.0,100\n2,20,5,200\n"),
    ],
)
def test_load_movielens_formats(tmp_path, name, text):
    log = load_movielens(write(tmp_path, name, text))
    assert log.users.tolist() == [1, 2]
    assert log.items.tolist() == [10, 20]
    assert log.ratings.tolist() == [4.0, 5.0]
    assert log.timestamps.tolist() == [100.0, 200.0]


def test_load_movielens_format_argument(tmp_path):
    path = write(tmp_path, "whatever.txt", "1::10::4::100\n")
    assert load_movielens(path, format="1m").items.tolist() == [10]
    assert load_movielens(path, format="ratings.dat").items.tolist() == [10]
    with pytest.raises(ConfigError, match="cannot infer"):
        load_movielens(path)
    with pytest.raises(ConfigError, match="u.data"):
        load_movielens(path, format="2m")


@pytest.mark.parametrize(
    "name, text, line, words",
    [
        ("u.data", "1\t10\t4\t100\n1\t10\t4\n", 2, ("got 3",)),
        ("u.data", "1 10 4 100\n", 1, ("got 1",)),  # spaces instead of tabs
        ("ratings.dat", "1::10::4::100\n1\t10\t4\t100\n", 2, ("got 1",)),
        ("ratings.dat", "1::10::4::100\n1::10::nan::100\n", 2, ("rating", "not finite")),
        ("ratings.dat", "1::10::4::100\n1::x::4::100\n", 2, ("item id",)),
        ("ratings.csv", "user,movie,rating,timestamp\n1,2,3,4\n", 1, ("userId,movieId",)),
        ("ratings.csv", "userId,movieId,rating,timestamp\n", 1, ("no data rows",)),
        ("ratings.csv", "userId,movieId,rating,timestamp\n1,2,3,4\n1;2;3;4\n", 3, ("got 1",)),
    ],
)
def test_load_movielens_bad(tmp_path, name, text, line, words):
    assert_data_error(load_movielens, write(tmp_path, name, text), f"line {line}", *words)


# -- generic delimited --------------------------------------------------------------------------


def test_load_csv_named_columns(tmp_path):
    text = "ts;score;title;item;user\n5;1.5;a;10;1\n6;2;b;11;2\n"
    log = load_csv(
        write(tmp_path, "x.csv", text),
        user_col="user",
        item_col="item",
        rating_col="score",
        timestamp_col="ts",
        sep=";",
    )
    assert log.users.tolist() == [1, 2]
    assert log.items.tolist() == [10, 11]
    assert log.ratings.tolist() == [1.5, 2.0]
    assert log.timestamps.tolist() == [5.0, 6.0]
    minimal = load_csv(write(tmp_path, "y.csv", "u,i\n1,2\n"), user_col="u", item_col="i")
    assert minimal.ratings is None and minimal.timestamps is None


def test_load_csv_missing_column_lists_header(tmp_path):
    path = write(tmp_path, "x.csv", "user,item,score\n1,2,3\n")
    err = assert_data_error(
        lambda p: load_csv(p, user_col="user", item_col="item", rating_col="rating"),
        path,
        "line 1",
        "'rating'",
        "'user', 'item', 'score'",
    )
    assert err.line == 1


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("u,i\n1,2\n1,2,3\n", 3, ("expected 2 columns", "got 3")),
        ("u,i\n1\t2\n", 2, ("got 1",)),
        ("u,i\n1,2\nfoo,2\n", 3, ("'foo'",)),
        ("u,i\n1,-2\n", 2, ("negative",)),
        ("u,i\n", 1, ("no data rows",)),
    ],
)
def test_load_csv_bad(tmp_path, text, line, words):
    path = write(tmp_path, "bad.csv", text)
    assert_data_error(
        lambda p: load_csv(p, user_col="u", item_col="i"), path, f"line {line}", *words
    )


def test_fast_and_slow_paths_agree_on_large_file(tmp_path):
    # A large file takes the vectorised path; the same rows with one bad line at the end must
    # be reported at exactly that line.
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 500, 20_000), rng.integers(0, 900, 20_000)
    body = "".join(f"{u}\t{i}\t3\t{k}\n" for k, (u, i) in enumerate(zip(users, items, strict=True)))
    log = load_movielens(write(tmp_path, "u.data", body))
    np.testing.assert_array_equal(log.users, users)
    np.testing.assert_array_equal(log.items, items)
    np.testing.assert_array_equal(log.timestamps, np.arange(20_000))
    bad = write(tmp_path, "bad.data", body + "1\t2\t3\n" + body)
    assert_data_error(load_movielens, bad, "line 20001", "got 3")


# -- DiffRec npy --------------------------------------------------------------------------------

TRAIN = [[0, 0], [0, 1], [1, 1], [1, 2], [2, 0], [2, 3], [3, 2]]
VALID = [[0, 2], [1, 0], [3, 3]]
TEST = [[0, 3], [2, 1]]


def write_diffrec(folder, train=TRAIN, valid=VALID, test=TEST, emb=True):
    folder.mkdir(exist_ok=True)
    for name, rows in (("train", train), ("valid", valid), ("test", test)):
        np.save(folder / f"{name}_list.npy", np.asarray(rows, np.int64).reshape(-1, 2))
    if emb:
        np.save(folder / "item_emb.npy", np.arange(8, dtype=np.float32).reshape(4, 2))
    return folder


def test_load_diffrec_good(tmp_path):
    folder = write_diffrec(tmp_path / "toy-set")
    data = load_diffrec(folder)
    split = data.split
    assert split.name == "toy-set"
    assert split.train.shape == split.valid.shape == split.test.shape == (4, 4)
    assert pairs(split.train) == {tuple(r) for r in TRAIN}
    assert pairs(split.valid) == {tuple(r) for r in VALID}
    assert pairs(split.test) == {tuple(r) for r in TEST}
    assert np.all(split.train.csr.data == 1)
    # train timestamps are the rows of train_list.npy (the release's chronological order)
    assert entries(split.train) == {tuple(r): (1.0, float(k)) for k, r in enumerate(TRAIN)}
    assert split.valid.timestamps is None and split.test.timestamps is None
    assert load_diffrec_split(folder, row_order_as_time=False).train.timestamps is None
    np.testing.assert_array_equal(data.item_emb, np.arange(8).reshape(4, 2))
    assert data.item_emb.dtype == np.float32
    assert load_diffrec_split(folder).train.nnz == len(TRAIN)
    assert load_diffrec(write_diffrec(tmp_path / "noemb", emb=False)).item_emb is None


def test_load_diffrec_shape_from_train_only(tmp_path):
    # A valid item beyond the largest train item is out of the train index space.
    folder = write_diffrec(tmp_path / "d", valid=[[0, 4]])
    assert_data_error(
        load_diffrec_split,
        folder,
        "row 0",
        "valid_list.npy",
        "item 4",
        "outside the train index space",
    )


@pytest.mark.parametrize(
    "part, rows, where, words",
    [
        ("valid", [[0, 2], [9, 0]], "row 1", ("user 9", "outside")),
        ("test", [[0, 3], [1, 7]], "row 1", ("item 7",)),
        ("train", TRAIN + [[2, 3]], "row 7", ("repeats row 5",)),
        ("valid", [[0, 2], [3, 3], [0, 2]], "row 2", ("repeats row 0",)),
        ("test", [[0, 3], [0, 1]], "row 1", ("also in train_list.npy",)),
        ("test", [[0, 3], [1, 0]], "row 1", ("also in valid_list.npy",)),
        ("train", TRAIN + [[1, -1]], "row 7", ("negative",)),
    ],
)
def test_load_diffrec_bad_rows(tmp_path, part, rows, where, words):
    folder = write_diffrec(tmp_path / "d", **{part: rows})
    assert_data_error(load_diffrec_split, folder, where, f"{part}_list.npy", *words)


def test_load_diffrec_valid_user_without_train(tmp_path):
    train = [[0, 0], [0, 1], [2, 1], [2, 2], [3, 0], [3, 3]]  # user 1 has no train row
    folder = write_diffrec(tmp_path / "d", train=train, valid=[[0, 2], [1, 0]], test=[[0, 3]])
    assert_data_error(
        load_diffrec_split, folder, "row 1", "valid_list.npy", "user 1", "no train interaction"
    )


def corrupt(folder, name, how):
    path = folder / name
    if how == "object":
        np.save(path, np.array([[1, "a"]], dtype=object), allow_pickle=True)
    elif how == "truncated":
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) - 12])
    elif how == "header":
        path.write_bytes(path.read_bytes()[:20])
    elif how == "text":
        path.write_text("0 1\n1 2\n")
    elif how == "empty-file":
        path.write_bytes(b"")
    elif how == "float":
        np.save(path, np.asarray(TRAIN, np.float64))
    elif how == "shape":
        np.save(path, np.zeros((3, 3), np.int64))
    elif how == "no-rows":
        np.save(path, np.zeros((0, 2), np.int64))
    elif how == "missing":
        path.unlink()
    return path


@pytest.mark.parametrize(
    "how, words",
    [
        ("object", ("object arrays",)),
        ("truncated", ("not a readable",)),
        ("header", ("not a readable",)),
        ("text", ("not a readable",)),
        ("empty-file", ("not a readable",)),
        ("float", ("dtype float64", "integer")),
        ("shape", ("(n, 2)",)),
        ("no-rows", ("no rows",)),
        ("missing", ("not found",)),
    ],
)
@pytest.mark.parametrize("name", ["train_list.npy", "test_list.npy"])
def test_load_diffrec_bad_files(tmp_path, how, words, name):
    folder = write_diffrec(tmp_path / "d")
    corrupt(folder, name, how)
    with pytest.raises(DataError) as info:
        load_diffrec_split(folder)
    message = str(info.value)
    assert name in message, message
    for w in words:
        assert w in message.lower() or w in message, message


def test_load_item_embeddings_checks(tmp_path):
    path = tmp_path / "item_emb.npy"
    emb = np.ones((4, 3), np.float32)
    emb[2, 1] = np.nan
    np.save(path, emb)
    assert_data_error(lambda p: load_item_embeddings(p, 4), path, "row 2", "non-finite")
    np.save(path, np.ones((5, 3), np.float32))
    assert_data_error(lambda p: load_item_embeddings(p, 4), path, "", "4 rows")
    np.save(path, np.ones((4, 3), np.int64))
    assert_data_error(lambda p: load_item_embeddings(p, 4), path, "", "float")
    folder = write_diffrec(tmp_path / "d")
    np.save(folder / "item_emb.npy", np.ones((3, 2), np.float32))
    with pytest.raises(DataError, match="item_emb.npy"):
        load_diffrec(folder)


def test_load_diffrec_not_a_folder(tmp_path):
    assert_data_error(load_diffrec_split, tmp_path / "missing", "", "not a directory")


# -- real files -----------------------------------------------------------------------------------


def test_real_diffrec_ml1m():
    data = load_diffrec(shared("diffrec-ml-1m_clean"))
    split = data.split
    assert split.name == "diffrec-ml-1m_clean"
    assert split.train.shape == (5949, 2810)
    assert (split.train.nnz, split.valid.nnz, split.test.nnz) == (403277, 110722, 57532)
    assert data.item_emb.shape == (2810, 64)
    folder = shared("diffrec-ml-1m_clean")
    raw = np.load(folder / "test_list.npy")
    assert pairs(split.test) == set(map(tuple, raw.tolist()))


@pytest.mark.parametrize(
    "folder, users, items, lines",
    [
        ("adrec-beauty", 10553, 6086, 94148),
        ("diffurec-beauty", 22363, 12101, 198502),
        ("adrec-ml-100k", 938, 1008, 54413),
    ],
)
def test_real_sequences(folder, users, items, lines):
    path = shared(f"{folder}/sequences.txt")
    data = load_sequences(path)
    assert (data.n_users, data.n_items, len(data.items)) == (users, items, lines)
    if folder == "adrec-ml-100k":  # full order check against a plain Python reading
        expected: dict[int, list[int]] = {}
        for line in path.read_text().split("\n"):
            if line.strip():
                u, i = map(int, line.split())
                expected.setdefault(u, []).append(i)
        got = {
            int(data.user_ids[u]): data.item_ids[data.sequence(u)].tolist()
            for u in range(data.n_users)
        }
        assert got == expected


def test_real_recbole_ml100k():
    log = load_recbole_inter(shared("ml-100k/ml-100k.inter"))
    assert len(log) == 100000
    assert len(set(log.users.tolist())) == 943
    assert len(set(log.items.tolist())) == 1682
    assert set(log.ratings.tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert log.timestamps is not None and np.all(np.isfinite(log.timestamps))
