"""Corrupt checkpoints: every one is detected on resume and never resumed from.

Three epochs of the toy model are checkpointed once (1, 2, 3); each test copies them, damages
checkpoint 3 (or all of them) the way a disk or a person might, and resumes for a fourth epoch.
Either the run resumes from the newest intact checkpoint (2), logs a warning naming the skipped
one and why, sets it aside as ``3.corrupt`` and ends bitwise where an uninterrupted run ends, or
it raises a CheckpointError naming the checkpoints and what was expected.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from train_toy_model import RESUME_CONFIG, assert_trees_equal, toy_autoencoder, toy_data, trajectory

from diffrec_jax.errors import CheckpointError, DiffrecError
from diffrec_jax.train import TrainingDiverged, train
from diffrec_jax.train.checkpoint import Checkpointer, array_checksums

# orbax leaves the reads it cancels after a failed one to be garbage-collected, which reports
# them as unraisable exceptions; the failure itself is what these tests check.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

CONFIG = RESUME_CONFIG


@pytest.fixture(scope="module")
def data():
    return toy_data(seed=6)


@pytest.fixture(scope="module")
def uninterrupted(data):
    return train(toy_autoencoder(), data, CONFIG)


@pytest.fixture(scope="module")
def three_epochs(data, tmp_path_factory):
    """A directory of checkpoints 1, 2 and 3."""
    directory = tmp_path_factory.mktemp("three") / "checkpoints"
    train(toy_autoencoder(), data, CONFIG.replace(max_epochs=3, checkpoint_dir=str(directory)))
    return directory


@pytest.fixture
def checkpoints(three_epochs, tmp_path):
    directory = tmp_path / "checkpoints"
    shutil.copytree(three_epochs, directory)
    return directory


def array_files(step: Path) -> list[Path]:
    """The ocdbt data files of a checkpoint, largest first."""
    files = [p for p in (step / "arrays").rglob("*") if p.is_file() and p.parent.name == "d"]
    assert files
    return sorted(files, key=lambda p: p.stat().st_size, reverse=True)


def stored_checksums(step: Path) -> dict[str, str] | None:
    """Checksums of the arrays orbax reads from checkpoint `step`, None if it cannot."""
    checkpointer = ocp.StandardCheckpointer()
    try:
        return array_checksums(checkpointer.restore(step / "arrays"))
    except Exception:
        return None
    finally:
        checkpointer.close()


def flip(step: Path, n_bytes: int, mask: int) -> None:
    """XORs `n_bytes` bytes of an array file of checkpoint `step` with `mask`, at the first of
    a few places where orbax then reads different values without any complaint (the raw
    literals of zstd frames of float arrays; the layout of the files varies from run to run)."""
    before = stored_checksums(step)
    assert before is not None
    for path in array_files(step)[:2]:
        original = path.read_bytes()
        for fraction in (0.5, 0.4, 0.6, 0.3, 0.7, 0.2, 0.8):
            at = int(len(original) * fraction)
            content = bytearray(original)
            for i in range(at, at + n_bytes):
                content[i] ^= mask
            path.write_bytes(bytes(content))
            after = stored_checksums(step)
            if after is not None and after != before:
                return
        path.write_bytes(original)
    raise AssertionError(f"no silent place to flip in {step}")


def resume(data, checkpoints, caplog, **kwargs):
    epochs = []
    with caplog.at_level(logging.WARNING):
        result = train(
            toy_autoencoder(**kwargs),
            data,
            CONFIG.replace(checkpoint_dir=str(checkpoints)),
            on_epoch=lambda r: epochs.append(r.epoch),
        )
    return result, epochs


def warnings_of(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


def assert_resumed_from_2(result, epochs, uninterrupted, checkpoints, caplog, *why):
    assert epochs == [3, 4]
    assert_trees_equal(result.state, uninterrupted.state)
    assert_trees_equal(result.params, uninterrupted.params)
    assert trajectory(result) == trajectory(uninterrupted)
    message = warnings_of(caplog)
    assert f"skipping checkpoint {checkpoints.resolve() / '3'} on resume" in message, message
    assert f"resuming from checkpoint {checkpoints.resolve() / '2'}" in message, message
    for fragment in why:
        assert fragment in message, message
    assert sorted(p.name for p in checkpoints.iterdir()) == ["1", "2", "3", "3.corrupt", "4"]


def test_three_flipped_bits_in_an_array_fall_back(data, uninterrupted, checkpoints, caplog):
    flip(checkpoints / "3", n_bytes=1, mask=0b10101)  # 3 bits
    result, epochs = resume(data, checkpoints, caplog)
    assert_resumed_from_2(
        result,
        epochs,
        uninterrupted,
        checkpoints,
        caplog,
        "has SHA-256",
        "as saved",
    )


def test_64_flipped_bytes_fall_back(data, uninterrupted, checkpoints, caplog):
    flip(checkpoints / "3", n_bytes=64, mask=0xFF)
    result, epochs = resume(data, checkpoints, caplog)
    assert_resumed_from_2(
        result, epochs, uninterrupted, checkpoints, caplog, "has SHA-256", "as saved"
    )


def test_a_truncated_array_file_falls_back(data, uninterrupted, checkpoints, caplog):
    path = array_files(checkpoints / "3")[0]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    result, epochs = resume(data, checkpoints, caplog)
    assert_resumed_from_2(
        result, epochs, uninterrupted, checkpoints, caplog, "its arrays could not be read"
    )


def test_deleted_array_files_fall_back(data, uninterrupted, checkpoints, caplog):
    for path in array_files(checkpoints / "3"):
        path.unlink()
    result, epochs = resume(data, checkpoints, caplog)
    assert_resumed_from_2(
        result, epochs, uninterrupted, checkpoints, caplog, "its arrays could not be read"
    )


def test_deleted_metadata_falls_back(data, uninterrupted, checkpoints, caplog):
    (checkpoints / "3" / "meta" / "metadata").unlink()
    result, epochs = resume(data, checkpoints, caplog)
    assert_resumed_from_2(
        result, epochs, uninterrupted, checkpoints, caplog, "its metadata (meta/metadata) could not"
    )


def edit_metadata(step: Path, edit) -> None:
    path = step / "meta" / "metadata"
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))


def test_an_edited_epoch_falls_back(data, uninterrupted, checkpoints, caplog):
    edit_metadata(checkpoints / "3", lambda d: d["meta"].update(epoch=1))
    result, epochs = resume(data, checkpoints, caplog)
    assert_resumed_from_2(
        result,
        epochs,
        uninterrupted,
        checkpoints,
        caplog,
        "its metadata does not match the checksum saved with it",
    )


def test_metadata_without_checksums_falls_back(data, uninterrupted, checkpoints, caplog):
    # As a checkpoint written before checksums existed: the caller's metadata alone.
    edit_metadata(checkpoints / "3", lambda d: [d.pop(k) for k in ("arrays", "meta_sha256")])
    result, epochs = resume(data, checkpoints, caplog)
    assert_resumed_from_2(
        result,
        epochs,
        uninterrupted,
        checkpoints,
        caplog,
        "its metadata has no arrays, meta_sha256",
    )


def test_a_checkpoint_under_another_epoch_is_skipped(data, uninterrupted, checkpoints, caplog):
    # Epoch 3's checkpoint found as "4": resuming it would shift the schedule by one epoch.
    (checkpoints / "3").rename(checkpoints / "4")
    epochs = []
    with caplog.at_level(logging.WARNING):
        result = train(
            toy_autoencoder(),
            data,
            CONFIG.replace(checkpoint_dir=str(checkpoints)),
            on_epoch=lambda r: epochs.append(r.epoch),
        )
    assert epochs == [3, 4]
    assert_trees_equal(result.state, uninterrupted.state)
    assert trajectory(result) == trajectory(uninterrupted)
    message = warnings_of(caplog)
    assert f"skipping checkpoint {checkpoints.resolve() / '4'} on resume" in message, message
    assert "it records epoch 3; expected 4, the name of its directory" in message, message
    assert sorted(p.name for p in checkpoints.iterdir()) == ["1", "2", "3", "4", "4.corrupt"]


def test_no_intact_checkpoint_is_a_clear_error(data, checkpoints):
    flip(checkpoints / "3", n_bytes=1, mask=0b10101)
    (checkpoints / "2" / "meta" / "metadata").write_text('{"epoch": 2, "tru')
    for path in array_files(checkpoints / "1"):
        path.unlink()
    epochs = []
    with pytest.raises(CheckpointError) as e:
        train(
            toy_autoencoder(),
            data,
            CONFIG.replace(checkpoint_dir=str(checkpoints)),
            on_epoch=lambda r: epochs.append(r.epoch),
        )
    assert isinstance(e.value, DiffrecError)
    message = str(e.value)
    root = checkpoints.resolve()
    assert f"no intact checkpoint among the 3 in {root}" in message
    assert f"checkpoint {root / '3'}: array [" in message and "as saved" in message
    assert f"checkpoint {root / '2'}: its metadata (meta/metadata) could not be read" in message
    assert f"checkpoint {root / '1'}: its arrays could not be read" in message
    assert epochs == []
    assert sorted(p.name for p in checkpoints.iterdir()) == ["1", "2", "3"]  # nothing moved


def test_divergence_names_only_a_verified_checkpoint(data, tmp_path, monkeypatch, caplog):
    # Checkpoint 3 is damaged on disk right after it is saved; the loss is NaN in epoch 4.
    save = Checkpointer.save

    def save_then_damage(self, epoch, arrays, meta):
        save(self, epoch, arrays, meta)
        if epoch == 3:
            self.wait()
            flip(self.path(3), n_bytes=1, mask=0b10101)

    monkeypatch.setattr(Checkpointer, "save", save_then_damage)
    with caplog.at_level(logging.WARNING), pytest.raises(TrainingDiverged) as e:
        train(toy_autoencoder(nan_from_step=12), data, CONFIG.replace(checkpoint_dir=str(tmp_path)))
    assert e.value.epoch == 4
    assert e.value.checkpoint == str(tmp_path.resolve() / "2")
    assert f"last good checkpoint: {tmp_path.resolve() / '2'}" in str(e.value)
    assert f"skipping checkpoint {tmp_path.resolve() / '3'} as the last good one" in (
        warnings_of(caplog)
    )


def test_checksums_see_every_bit_and_the_key_data():
    tree = {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "key": jax.random.key(3)}
    sums = array_checksums(tree)
    assert set(sums) == {"['x']", "['key']"}
    flipped = tree["x"].copy()
    flipped.view(np.uint32)[1, 2] ^= 1
    assert array_checksums({**tree, "x": flipped})["['x']"] != sums["['x']"]
    assert array_checksums({**tree, "key": jax.random.key(4)})["['key']"] != sums["['key']"]
    # Same bytes, another dtype or shape: another checksum.
    assert array_checksums({**tree, "x": tree["x"].view(np.int32)})["['x']"] != sums["['x']"]
    assert array_checksums({**tree, "x": tree["x"].reshape(3, 2)})["['x']"] != sums["['x']"]
