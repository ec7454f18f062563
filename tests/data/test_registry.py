"""Public-dataset registry: the whole download path against a local HTTP server.

The server (http.server in a thread, on 127.0.0.1) serves a small MovieLens-like zip and an
Amazon-like .json.gz that the tests build, a transfer that closes before its Content-Length,
.gz files without a Content-Length (whole, truncated, with a bad CRC), decompression bombs, a
server that trickles bytes and one that stalls, and 404s; a closed port stands for "no
network". Nothing leaves the machine.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import re
import socket
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from diffrec_jax.data import load_dataset, registry
from diffrec_jax.data.registry import PublicDataset
from diffrec_jax.errors import ConfigError, DataError

ROWS = [
    (u, i, 1 + (u * i) % 5, 1000 + 10 * u + i)
    for u in range(1, 13)
    for i in range(1, 9)
    if (u + i) % 3
]
U_DATA = "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in ROWS).encode()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


ARCHIVE = _zip({"ml-test/README": b"test data\n", "ml-test/u.data": U_DATA})
REVIEWS = "".join(
    json.dumps({"reviewerID": f"A{u}", "asin": f"B{i:03d}", "overall": r, "unixReviewTime": t})
    + "\n"
    for u, i, r, t in ROWS
).encode()
REVIEWS_GZ = gzip.compress(REVIEWS)
BAD_CRC_GZ = REVIEWS_GZ[:-8] + bytes(b ^ 0xFF for b in REVIEWS_GZ[-8:-4]) + REVIEWS_GZ[-4:]
ZEROS = bytes(10 << 20)  # 10 MB that compress about 1000 times: a small decompression bomb
BOMB_GZ = gzip.compress(ZEROS)
BOMB_ZIP = _zip({"ml-test/u.data": ZEROS})


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: the connection closes after every response, so a short body is truncated.
    routes = {
        "/ml-test.zip": ARCHIVE,
        "/reviews_Test_5.json.gz": REVIEWS_GZ,
        "/bomb.json.gz": BOMB_GZ,
        "/bomb.zip": BOMB_ZIP,
    }
    # Sent without a Content-Length: the body ends when the connection closes.
    unannounced = {
        "/whole.json.gz": REVIEWS_GZ,
        "/truncated.json.gz": REVIEWS_GZ[: len(REVIEWS_GZ) // 2],
        "/bad-crc.json.gz": BAD_CRC_GZ,
    }

    def do_GET(self):
        self.server.requests.append(self.path)
        if self.path == "/truncated.zip":
            self.send_response(200)
            self.send_header("Content-Length", str(len(ARCHIVE) + 1000))
            self.end_headers()
            self.wfile.write(ARCHIVE[: len(ARCHIVE) // 2])
            return
        if self.path in ("/slow.zip", "/stall.zip"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(ARCHIVE)))
            self.end_headers()
            self.wfile.flush()
            # slow: one byte every 0.05 s (the whole file would take over a minute);
            # stall: nothing for 3 s. Either stops once the client has hung up.
            pause, steps = (0.05, len(ARCHIVE)) if self.path == "/slow.zip" else (3.0, 1)
            try:
                for k in range(steps):
                    time.sleep(pause)
                    self.wfile.write(ARCHIVE[k : k + 1])
                    self.wfile.flush()
            except OSError:
                pass
            return
        if self.path in self.unannounced:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(self.unannounced[self.path])
            return
        body = self.routes.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # keep the test output quiet
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


@pytest.fixture
def requests(server):
    server.requests.clear()
    return server.requests


def base_url(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/ml-test.zip"  # nothing listens there any more


def movielens_entry(url: str, sha256: str | None = sha(ARCHIVE), **changes) -> PublicDataset:
    entry = PublicDataset(
        name="ml-test",
        title="MovieLens test",
        url=url,
        filename="ml-test.zip",
        member="ml-test/u.data",
        kind="movielens",
        sha256=sha256,
        size=len(ARCHIVE),
        homepage="http://localhost/",
        license="test data",
    )
    return dataclasses.replace(entry, **changes)


def amazon_entry(url: str, sha256: str | None = None) -> PublicDataset:
    return PublicDataset(
        name="amazon-test",
        title="Amazon test reviews",
        url=url,
        filename="reviews_Test_5.json.gz",
        member="reviews_Test_5.json",
        kind="amazon",
        sha256=sha256,
        size=None,
        homepage="http://localhost/",
        license="test data",
    )


def cached_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


# -- the download path ----------------------------------------------------------------------------


def test_download_checksum_match_extracts_and_caches(server, requests, tmp_path):
    entry = movielens_entry(f"{base_url(server)}/ml-test.zip")
    lines = []
    path = registry.fetch(entry, cache_dir=tmp_path, log=lines.append)
    assert path == tmp_path / "ml-test" / "ml-test" / "u.data"
    assert path.read_bytes() == U_DATA
    assert (tmp_path / "ml-test" / "ml-test.zip").read_bytes() == ARCHIVE
    assert cached_files(tmp_path) == sorted([path, tmp_path / "ml-test" / "ml-test.zip"])
    assert requests == ["/ml-test.zip"]
    assert any("downloading" in line for line in lines)
    assert not any("checksum unknown" in line for line in lines)


def test_cache_hit_makes_no_request(server, requests, tmp_path, monkeypatch):
    entry = movielens_entry(f"{base_url(server)}/ml-test.zip")
    monkeypatch.setitem(registry.DATASETS, "ml-test", entry)
    monkeypatch.setenv(registry.CACHE_ENV, str(tmp_path))  # the cache root comes from the env
    first = load_dataset("registry:ml-test", rating_threshold=3, split="temporal")
    assert requests == ["/ml-test.zip"]
    second = load_dataset("ml-test", rating_threshold=3, split="temporal")
    assert requests == ["/ml-test.zip"]  # no request the second time
    kept = {(u, i) for u, i, r, _ in ROWS if r >= 3}
    for ds in (first, second):
        assert ds.name == "ml-test" and ds.stats["interactions"] == len(kept)
        assert f"MovieLens u.data file {tmp_path}" in ds.split.history[0]
    # Even a dead URL is fine once the file is cached.
    monkeypatch.setitem(registry.DATASETS, "ml-test", movielens_entry(closed_port_url()))
    assert load_dataset("ml-test", download=False).stats["interactions"] == len(ROWS)


def test_checksum_mismatch_leaves_nothing(server, requests, tmp_path):
    url = f"{base_url(server)}/ml-test.zip"
    with pytest.raises(DataError) as info:
        registry.fetch(movielens_entry(url, sha256="0" * 64), cache_dir=tmp_path, log=print)
    message = str(info.value)
    assert "checksum mismatch" in message and url in message and sha(ARCHIVE) in message
    assert cached_files(tmp_path) == []
    assert requests == ["/ml-test.zip"]


def test_truncated_transfer_leaves_nothing(server, requests, tmp_path):
    url = f"{base_url(server)}/truncated.zip"
    with pytest.raises(DataError) as info:
        registry.fetch(movielens_entry(url), cache_dir=tmp_path, log=print)
    message = str(info.value)
    assert "incomplete download" in message and url in message, message
    assert cached_files(tmp_path) == []


def test_http_404(server, requests, tmp_path):
    url = f"{base_url(server)}/missing.zip"
    with pytest.raises(DataError) as info:
        registry.fetch(movielens_entry(url), cache_dir=tmp_path, log=print)
    message = str(info.value)
    assert "HTTP 404" in message and url in message
    assert str(tmp_path / "ml-test" / "ml-test.zip") in message  # where to place it by hand
    assert cached_files(tmp_path) == []


def test_no_network_names_url_and_cache_path(tmp_path):
    url = closed_port_url()
    with pytest.raises(DataError) as info:
        registry.fetch(movielens_entry(url), cache_dir=tmp_path, timeout=10, log=print)
    message = str(info.value)
    assert url in message and "no network?" in message
    assert f"place it at {tmp_path / 'ml-test' / 'ml-test.zip'}" in message
    assert cached_files(tmp_path) == []


def test_unknown_checksum_prints_the_sha256(server, requests, tmp_path):
    lines = []
    path = registry.fetch(
        movielens_entry(f"{base_url(server)}/ml-test.zip", sha256=None),
        cache_dir=tmp_path,
        allow_unverified=True,
        log=lines.append,
    )
    assert path.read_bytes() == U_DATA
    (line,) = [x for x in lines if "checksum unknown" in x]
    assert "checksum unknown: verify manually" in line and sha(ARCHIVE) in line
    assert f"pin it (sha256='{sha(ARCHIVE)}')" in line


def test_unverified_download_needs_an_opt_in(server, requests, tmp_path, monkeypatch):
    monkeypatch.delenv(registry.ALLOW_UNVERIFIED_ENV, raising=False)
    url = f"{base_url(server)}/ml-test.zip"
    entry = movielens_entry(url, sha256=None)
    for call in (
        lambda: registry.fetch(entry, cache_dir=tmp_path, log=print),
        lambda: registry.download(url, tmp_path / "ml-test.zip", sha256=None),
    ):
        with pytest.raises(DataError) as info:
            call()
        message = str(info.value)
        assert url in message and "no published sha256" in message, message
        assert "allow_unverified=True" in message and registry.ALLOW_UNVERIFIED_ENV in message
        assert "Nothing was requested" in message
    assert requests == [] and cached_files(tmp_path) == []
    # The environment variable is the opt-in of callers that cannot pass the argument.
    monkeypatch.setenv(registry.ALLOW_UNVERIFIED_ENV, "1")
    lines = []
    assert registry.fetch(entry, cache_dir=tmp_path, log=lines.append).read_bytes() == U_DATA
    assert any(sha(ARCHIVE) in line for line in lines) and requests == ["/ml-test.zip"]
    dest = registry.download(url, tmp_path / "x.zip", sha256=None, log=lines.append)
    assert dest.read_bytes() == ARCHIVE


def test_default_log_goes_to_stderr(server, requests, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(registry.ALLOW_UNVERIFIED_ENV, "1")
    registry.fetch(
        movielens_entry(f"{base_url(server)}/ml-test.zip", sha256=None), cache_dir=tmp_path
    )
    err = capsys.readouterr().err
    assert "checksum unknown: verify manually" in err and sha(ARCHIVE) in err


def test_file_placed_by_hand_is_verified_and_extracted(tmp_path):
    folder = tmp_path / "ml-test"
    folder.mkdir()
    entry = movielens_entry(closed_port_url())  # no network: only the placed file can work
    (folder / "ml-test.zip").write_bytes(ARCHIVE[:-1] + b"!")
    with pytest.raises(DataError, match="does not match the published"):
        registry.fetch(entry, cache_dir=tmp_path)
    (folder / "ml-test.zip").write_bytes(ARCHIVE)
    assert registry.fetch(entry, cache_dir=tmp_path, log=print).read_bytes() == U_DATA
    with pytest.raises(DataError, match="downloading is disabled"):
        registry.fetch(entry, cache_dir=tmp_path / "empty", download_missing=False)


@pytest.mark.parametrize(
    "archive, words",
    [
        (_zip({"other/u.data": U_DATA}), ("has no member 'ml-test/u.data'", "other/u.data")),
        (ARCHIVE[: len(ARCHIVE) - 40], ("cannot extract", "expected a complete zip file")),
    ],
)
def test_bad_archive(tmp_path, archive, words):
    folder = tmp_path / "ml-test"
    folder.mkdir()
    (folder / "ml-test.zip").write_bytes(archive)
    entry = movielens_entry(closed_port_url(), sha256=None)
    with pytest.raises(DataError) as info:
        registry.fetch(entry, cache_dir=tmp_path, log=print)
    for w in words:
        assert w in str(info.value), str(info.value)
    assert cached_files(tmp_path) == [folder / "ml-test.zip"]  # no partial extraction


def test_gz_download_loads_amazon_reviews(server, requests, tmp_path, monkeypatch):
    entry = amazon_entry(f"{base_url(server)}/reviews_Test_5.json.gz", sha(REVIEWS_GZ))
    monkeypatch.setitem(registry.DATASETS, "amazon-test", entry)
    ds = load_dataset("amazon-test", cache_dir=tmp_path, split="temporal")
    assert (tmp_path / "amazon-test" / "reviews_Test_5.json").read_bytes() == REVIEWS
    assert ds.name == "amazon-test" and ds.stats["interactions"] == len(ROWS)
    assert ds.stats["users"] == 12 and ds.stats["items"] == 8
    assert ds.split.train.user_ids.dtype.kind == "i"  # string ids numbered
    assert any("numbered in sorted string order" in h for h in ds.split.history)
    assert requests == ["/reviews_Test_5.json.gz"]


def test_yelp_is_manual_only(tmp_path):
    path = tmp_path / "yelp" / "yelp_academic_dataset_review.json"
    with pytest.raises(DataError) as info:
        load_dataset("yelp", cache_dir=tmp_path)
    message = str(info.value)
    assert "https://www.yelp.com/dataset" in message and str(path) in message
    assert "forbid redistributing" in message
    path.parent.mkdir()
    path.write_text(
        "".join(
            json.dumps(
                {
                    "review_id": f"r{k}",
                    "user_id": f"u{u}",
                    "business_id": f"b{i}",
                    "stars": r,
                    "date": f"2018-07-{1 + k % 28:02d} 22:09:11",
                }
            )
            + "\n"
            for k, (u, i, r, _) in enumerate(ROWS)
        )
    )
    ds = load_dataset("yelp", cache_dir=tmp_path, split="temporal")
    assert ds.name == "yelp" and ds.stats["interactions"] == len(ROWS)


def test_gz_without_content_length(server, requests, tmp_path):
    """Without a Content-Length only the gzip stream shows a transfer cut short: it is
    decompressed from the temporary file, and nothing reaches the cache unless it is whole."""
    whole = amazon_entry(f"{base_url(server)}/whole.json.gz")
    path = registry.fetch(whole, cache_dir=tmp_path / "ok", allow_unverified=True, log=print)
    assert path.read_bytes() == REVIEWS
    assert (tmp_path / "ok" / "amazon-test" / "reviews_Test_5.json.gz").read_bytes() == REVIEWS_GZ
    for route, why in [
        ("/truncated.json.gz", "end-of-stream marker"),
        ("/bad-crc.json.gz", "CRC check failed"),
    ]:
        url = base_url(server) + route
        with pytest.raises(DataError) as info:
            registry.fetch(amazon_entry(url), cache_dir=tmp_path, allow_unverified=True, log=print)
        message = str(info.value)
        assert f"the download of {url} was discarded" in message and why in message, message
        assert "expected a complete gzip file" in message and "nothing was cached" in message
        assert cached_files(tmp_path / "amazon-test") == []


@pytest.mark.parametrize("route", ["/bomb.json.gz", "/bomb.zip"])
def test_decompression_bomb_download(server, requests, tmp_path, route):
    url = base_url(server) + route
    entry = amazon_entry(url) if route.endswith(".gz") else movielens_entry(url, sha256=None)
    with pytest.raises(DataError) as info:
        registry.fetch(entry, cache_dir=tmp_path, allow_unverified=True, log=print)
    message = str(info.value)
    archive = len(BOMB_GZ if route.endswith(".gz") else BOMB_ZIP)
    assert f"the download of {url} was discarded" in message, message
    assert f"{entry.member} decompresses to more than {100 * archive} bytes" in message
    assert f"max_ratio=100 x the {archive}-byte archive" in message
    assert "decompression bomb" in message and "nothing was cached" in message
    assert cached_files(tmp_path) == []


def test_decompression_limits_of_a_placed_file(tmp_path):
    folder = tmp_path / "amazon-test"
    folder.mkdir()
    (folder / "reviews_Test_5.json.gz").write_bytes(BOMB_GZ)
    entry = amazon_entry(closed_port_url())
    with pytest.raises(DataError) as info:
        registry.fetch(entry, cache_dir=tmp_path, log=print)
    assert str(info.value).startswith(f"{folder / 'reviews_Test_5.json.gz'}: ")
    assert "max_ratio=100" in str(info.value)
    (folder / "reviews_Test_5.json.gz").write_bytes(REVIEWS_GZ)
    with pytest.raises(DataError, match=r"more than 1000 bytes \(max_extracted=1000\)"):
        registry.fetch(entry, cache_dir=tmp_path, max_extracted=1000, log=print)
    assert cached_files(tmp_path) == [folder / "reviews_Test_5.json.gz"]  # nothing extracted
    path = registry.fetch(entry, cache_dir=tmp_path, max_extracted=len(REVIEWS), log=print)
    assert path.read_bytes() == REVIEWS  # exactly at the limit is fine
    path.unlink()
    (folder / "reviews_Test_5.json.gz").write_bytes(BOMB_GZ)
    path = registry.fetch(entry, cache_dir=tmp_path, max_ratio=None, max_extracted=None, log=print)
    assert path.stat().st_size == len(ZEROS)  # limits off: the caller's explicit choice


@pytest.mark.parametrize("route", ["/slow.zip", "/stall.zip"])
def test_timeout_is_a_deadline_for_the_whole_download(server, requests, tmp_path, route):
    url = base_url(server) + route
    start = time.monotonic()
    with pytest.raises(DataError) as info:
        registry.fetch(movielens_entry(url), cache_dir=tmp_path, timeout=1, log=print)
    elapsed = time.monotonic() - start
    message = str(info.value)
    assert f"the download of {url} did not finish within timeout=1 s" in message, message
    assert "nothing was cached" in message and "place it at" in message
    assert 0.9 < elapsed < 2.5, elapsed
    assert cached_files(tmp_path) == []


def test_stalled_download(server, requests, tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "STALL_TIMEOUT", 0.3)
    url = base_url(server) + "/stall.zip"
    start = time.monotonic()
    with pytest.raises(DataError) as info:
        registry.fetch(movielens_entry(url), cache_dir=tmp_path, timeout=30, log=print)
    assert time.monotonic() - start < 2
    message = str(info.value)
    assert f"the download of {url} stalled: no data for 0.3 s" in message, message
    assert cached_files(tmp_path) == []


@pytest.mark.parametrize(
    "option, value",
    [
        ("timeout", 0),
        ("timeout", "60"),
        ("max_ratio", -1),
        ("max_ratio", True),
        ("max_extracted", 1.5),
        ("max_extracted", 0),
    ],
)
def test_bad_limits(tmp_path, option, value):
    with pytest.raises(ConfigError, match=re.escape(f"{option}={value!r}; expected")):
        registry.fetch(movielens_entry(closed_port_url()), cache_dir=tmp_path, **{option: value})


# -- the registry itself --------------------------------------------------------------------------


def test_registry_entries():
    assert {"ml-100k", "ml-1m", "ml-20m", "amazon-beauty", "amazon-baby", "amazon-sports"} <= set(
        registry.names()
    )
    for name in registry.names():
        d = registry.get(name)
        assert d.name == name and registry.lookup(name) is d
        for alias in d.aliases:
            assert registry.get(alias) is d
        assert d.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", d.sha256), name
        assert d.kind in ("movielens", "amazon", "yelp")
        if d.manual is None:
            assert d.url.startswith("https://") and d.url.endswith(d.filename), d.url
        else:
            assert d.url is None and "{path}" in d.manual
    for size in ("100k", "1m", "20m"):  # published checksums
        d = registry.get(f"movielens-{size}")
        assert d.sha256 and d.url == f"https://files.grouplens.org/datasets/movielens/ml-{size}.zip"
    assert registry.get("amazon-beauty").url == (
        "https://snap.stanford.edu/data/amazon/productGraph/categoryFiles/reviews_Beauty_5.json.gz"
    )
    assert registry.get("amazon-beauty").sha256 is None  # none published: verified by hand
    with pytest.raises(ConfigError, match="ml-1m"):
        registry.get("ml-2m")
    with pytest.raises(ConfigError, match="unknown public dataset"):
        load_dataset("registry:nope")
    with pytest.raises(ConfigError, match="cache_dir"):
        load_dataset("movielens:u.data", cache_dir="/tmp")  # registry options only


def test_cache_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv(registry.CACHE_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert registry.cache_dir() == tmp_path / "home" / ".cache" / "diffrec_jax"
    monkeypatch.setenv(registry.CACHE_ENV, str(tmp_path / "env"))
    assert registry.cache_dir() == tmp_path / "env"
    assert registry.cache_dir(tmp_path / "arg") == tmp_path / "arg"
    assert registry.cache_dir_for(registry.get("ml-1m")) == tmp_path / "env" / "ml-1m"
