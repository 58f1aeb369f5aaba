"""Versioned model artifacts: round trip, publishing, and refusal of every kind of damage."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse

import engine.artifacts as artifacts_module
from engine.artifacts import (
    CURRENT,
    FORMAT_VERSION,
    ArtifactError,
    csr_arrays,
    csr_from_arrays,
    current_version,
    list_versions,
    load_artifact,
    publish,
    write_artifact,
)


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "item_factors": rng.standard_normal((5, 3)).astype(np.float32),
        "item_ids": np.array(["sku-1", "sku-22", "sku-333", "a", "b"]),
        "counts": np.arange(5, dtype=np.int64),
    }


def _write(models: Path, version: str, **arrays: np.ndarray) -> Path:
    return write_artifact(models, arrays or _arrays(), {"model": "als"}, version=version)


def _manifest(vdir: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((vdir / "manifest.json").read_text())
    return manifest


def _rewrite_manifest(vdir: Path, manifest: dict[str, Any]) -> None:
    (vdir / "manifest.json").write_text(json.dumps(manifest))


def _refused(path: Path, *, naming: str, verify: bool = True) -> str:
    with pytest.raises(ArtifactError) as info:
        load_artifact(path, verify=verify)
    message = str(info.value)
    assert naming in message
    assert "\n" not in message
    return message


# --- round trip --------------------------------------------------------------------------------


def test_round_trip_preserves_values_and_dtypes_as_memmaps(tmp_path: Path) -> None:
    arrays = _arrays()
    vdir = write_artifact(tmp_path, arrays, {"model": "als", "factors": 3})

    art = load_artifact(vdir)

    assert art.path == vdir.resolve()
    assert set(art.arrays) == set(arrays)
    for name, expected in arrays.items():
        got = art.arrays[name]
        # Memory-mapped (served as a plain ndarray over the mapping), not read into memory.
        assert type(got) is np.ndarray
        assert isinstance(got.base, np.memmap)
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)
        assert not got.flags.writeable
    assert art.arrays["item_factors"].dtype == np.float32
    assert art.arrays["item_ids"].dtype.kind == "U"


def test_zero_dim_and_empty_arrays_round_trip(tmp_path: Path) -> None:
    arrays = {"scalar": np.array(2.5), "empty": np.zeros((0, 4), dtype=np.float32)}
    art = load_artifact(write_artifact(tmp_path, arrays, {}))

    assert art.arrays["scalar"].shape == ()
    assert float(art.arrays["scalar"]) == 2.5
    assert art.arrays["empty"].shape == (0, 4)
    assert art.arrays["empty"].dtype == np.float32


def test_fortran_ordered_input_is_stored_c_contiguous(tmp_path: Path) -> None:
    matrix = np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4))
    art = load_artifact(write_artifact(tmp_path, {"m": matrix}, {}))

    assert art.arrays["m"].flags.c_contiguous
    np.testing.assert_array_equal(art.arrays["m"], matrix)


def test_csr_helpers_round_trip_without_copying(tmp_path: Path) -> None:
    matrix = scipy.sparse.random(6, 4, density=0.4, format="csr", dtype=np.float32, rng=3)
    arrays = csr_arrays("interactions", matrix)
    assert set(arrays) == {
        "interactions.data",
        "interactions.indices",
        "interactions.indptr",
        "interactions.shape",
    }

    art = load_artifact(write_artifact(tmp_path, arrays, {}))
    restored = csr_from_arrays(art.arrays, "interactions")

    assert restored.shape == (6, 4)
    assert restored.dtype == np.float32
    np.testing.assert_array_equal(restored.toarray(), matrix.toarray())
    assert np.shares_memory(restored.data, art.arrays["interactions.data"])


def test_csr_from_arrays_names_the_missing_part(tmp_path: Path) -> None:
    arrays = csr_arrays("x", scipy.sparse.csr_matrix(np.eye(3)))
    del arrays["x.indptr"]
    with pytest.raises(ArtifactError, match=r"x\.indptr\.npy"):
        csr_from_arrays(arrays, "x")


def test_csr_arrays_rejects_non_csr() -> None:
    with pytest.raises(TypeError, match="CSR"):
        csr_arrays("x", scipy.sparse.coo_matrix(np.eye(2)))


def test_manifest_gets_engine_fields(tmp_path: Path) -> None:
    vdir = write_artifact(tmp_path, _arrays(), {"model": "als", "params": {"k": 3}})
    manifest = load_artifact(vdir).manifest

    assert manifest["model"] == "als"
    assert manifest["params"] == {"k": 3}
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["version"] == vdir.name
    assert manifest["created"].endswith("+00:00")
    entry = manifest["files"]["item_factors.npy"]
    assert entry["dtype"] == "<f4"
    assert entry["shape"] == [5, 3]
    assert entry["bytes"] == (vdir / "item_factors.npy").stat().st_size
    assert len(entry["sha256"]) == 64
    assert not list(tmp_path.glob(".tmp-*"))


def test_default_versions_are_stamps_that_sort_in_write_order(tmp_path: Path) -> None:
    written = [write_artifact(tmp_path, _arrays(), {}).name for _ in range(3)]

    assert len(set(written)) == 3
    assert all(re.fullmatch(r"\d{8}T\d{6}Z(-\d{2})?", v) for v in written)
    assert list_versions(tmp_path) == sorted(written) == written


def test_list_versions_orders_and_skips_incomplete(tmp_path: Path) -> None:
    for version in ("20260102T000000Z", "20260101T000000Z", "20260101T000000Z-01"):
        _write(tmp_path, version)
    (tmp_path / ".tmp-20260103T000000Z").mkdir()
    (tmp_path / "not-a-version").mkdir()
    publish(tmp_path, "20260101T000000Z")

    assert list_versions(tmp_path) == [
        "20260101T000000Z",
        "20260101T000000Z-01",
        "20260102T000000Z",
    ]
    assert list_versions(tmp_path / "missing") == []


# --- writing refusals --------------------------------------------------------------------------


def test_existing_version_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, "v1")
    with pytest.raises(ArtifactError, match="already exists"):
        _write(tmp_path, "v1")


def test_object_dtype_is_refused_at_write(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"ids\.npy.*object dtype"):
        write_artifact(tmp_path, {"ids": np.array(["a", None], dtype=object)}, {})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["../evil", "a/b", ".hidden", "", "x..y"])
def test_unsafe_array_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ArtifactError, match="safe file name"):
        write_artifact(tmp_path, {name: np.zeros(2)}, {})


@pytest.mark.parametrize("version", ["../v", "a/b", ".tmp-v", CURRENT, "current.tmp-1", ""])
def test_unsafe_versions_are_refused(tmp_path: Path, version: str) -> None:
    with pytest.raises(ArtifactError, match="not a valid version name"):
        write_artifact(tmp_path, _arrays(), {}, version=version)


def test_non_json_manifest_value_is_refused_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="'trained_on'"):
        write_artifact(tmp_path, _arrays(), {"trained_on": {1, 2}})
    with pytest.raises(ArtifactError, match="'loss'"):
        write_artifact(tmp_path, _arrays(), {"loss": float("nan")})
    assert list(tmp_path.iterdir()) == []


def test_reserved_manifest_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="'version' is reserved"):
        write_artifact(tmp_path, _arrays(), {"version": "mine"})


# --- publishing --------------------------------------------------------------------------------


def test_publish_then_load_via_models_dir_and_current_link(tmp_path: Path) -> None:
    assert current_version(tmp_path) is None
    _write(tmp_path, "v1")
    publish(tmp_path, "v1")

    assert current_version(tmp_path) == "v1"
    assert os.readlink(tmp_path / CURRENT) == "v1"  # relative: the models dir can be moved
    for path in (tmp_path, tmp_path / CURRENT, tmp_path / "v1"):
        art = load_artifact(path)
        assert art.version == "v1"
        assert art.path == (tmp_path / "v1").resolve()
    assert not list(tmp_path.glob("current.tmp-*"))


def test_republish_flips_current(tmp_path: Path) -> None:
    _write(tmp_path, "v1")
    _write(tmp_path, "v2", only=np.ones(3))
    publish(tmp_path, "v1")
    publish(tmp_path, "v2")

    assert current_version(tmp_path) == "v2"
    assert set(load_artifact(tmp_path).arrays) == {"only"}
    publish(tmp_path, "v1")
    assert load_artifact(tmp_path).version == "v1"


def test_publishing_a_broken_version_is_refused_and_current_is_kept(tmp_path: Path) -> None:
    _write(tmp_path, "v1")
    publish(tmp_path, "v1")
    v2 = _write(tmp_path, "v2")
    (v2 / "counts.npy").unlink()

    with pytest.raises(ArtifactError, match=r"counts\.npy"):
        publish(tmp_path, "v2")
    with pytest.raises(ArtifactError, match="no such version"):
        publish(tmp_path, "v3")

    assert current_version(tmp_path) == "v1"
    assert load_artifact(tmp_path).version == "v1"
    assert not list(tmp_path.glob("current.tmp-*"))


def test_loading_an_unpublished_models_dir_says_what_to_do(tmp_path: Path) -> None:
    message = _refused(tmp_path, naming=str(tmp_path))
    assert "no model published" in message and "personalize train" in message
    _write(tmp_path, "v1")
    assert "no model published" in _refused(tmp_path, naming=str(tmp_path))


def test_dangling_current_is_refused(tmp_path: Path) -> None:
    os.symlink("gone", tmp_path / CURRENT)
    _refused(tmp_path, naming=CURRENT)


def test_leftover_tmp_dir_is_ignored(tmp_path: Path) -> None:
    _write(tmp_path, "v1")
    publish(tmp_path, "v1")
    crashed = tmp_path / ".tmp-v2"
    crashed.mkdir()
    np.save(crashed / "half.npy", np.zeros(3), allow_pickle=False)

    assert list_versions(tmp_path) == ["v1"]
    assert load_artifact(tmp_path).version == "v1"
    assert _write(tmp_path, "v3").name == "v3"


# --- damage ------------------------------------------------------------------------------------


def test_error_messages_are_one_line() -> None:
    assert str(ArtifactError("x.npy: bad\nheader")) == "x.npy: bad header"


def test_flipped_byte_fails_the_checksum(tmp_path: Path) -> None:
    vdir = _write(tmp_path, "v1")
    target = vdir / "item_factors.npy"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))

    assert "sha256" in _refused(vdir, naming="item_factors.npy")
    load_artifact(vdir, verify=False)  # same size and header: only the checksum can tell


def test_of_two_damaged_files_the_first_listed_is_named(tmp_path: Path) -> None:
    # The files are checked side by side; the error is still the first in the manifest's order.
    vdir = _write(tmp_path, "v1")
    listed = list(_manifest(vdir)["files"])
    for name in (listed[0], listed[-1]):
        data = bytearray((vdir / name).read_bytes())
        data[-1] ^= 0xFF
        (vdir / name).write_bytes(bytes(data))
    assert listed[-1] not in _refused(vdir, naming=listed[0])


def test_a_failed_write_leaves_no_version_and_no_temporary_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_npy = artifacts_module._write_npy

    def failing(path: Path, arr: np.ndarray) -> dict[str, Any]:
        if path.name == "item_ids.npy":
            raise OSError(28, "No space left on device")
        return write_npy(path, arr)

    monkeypatch.setattr(artifacts_module, "_write_npy", failing)
    with pytest.raises(ArtifactError, match="No space left"):
        _write(tmp_path, "v1")
    assert list(tmp_path.iterdir()) == []


def test_truncated_file_is_refused_even_without_verify(tmp_path: Path) -> None:
    vdir = _write(tmp_path, "v1")
    target = vdir / "counts.npy"
    target.write_bytes(target.read_bytes()[:-8])

    assert "truncated" in _refused(vdir, naming="counts.npy")
    _refused(vdir, naming="counts.npy", verify=False)


def test_missing_file_is_refused_even_without_verify(tmp_path: Path) -> None:
    vdir = _write(tmp_path, "v1")
    (vdir / "item_ids.npy").unlink()

    assert "missing" in _refused(vdir, naming="item_ids.npy")
    _refused(vdir, naming="item_ids.npy", verify=False)


def test_unlisted_npy_is_refused(tmp_path: Path) -> None:
    vdir = _write(tmp_path, "v1")
    np.save(vdir / "planted.npy", np.zeros(2), allow_pickle=False)

    assert "not listed" in _refused(vdir, naming="planted.npy")


def test_missing_manifest_is_refused(tmp_path: Path) -> None:
    vdir = _write(tmp_path, "v1")
    (vdir / "manifest.json").unlink()

    assert "missing" in _refused(vdir, naming="manifest.json")


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "\xff\xfe"])
def test_unreadable_manifest_is_refused(tmp_path: Path, text: str) -> None:
    vdir = _write(tmp_path, "v1")
    (vdir / "manifest.json").write_text(text, encoding="latin-1")

    _refused(vdir, naming="manifest.json")


def test_manifest_without_format_version_is_refused(tmp_path: Path) -> None:
    vdir = _write(tmp_path, "v1")
    manifest = _manifest(vdir)
    del manifest["format_version"]
    _rewrite_manifest(vdir, manifest)

    assert "format_version" in _refused(vdir, naming="manifest.json")


@pytest.mark.parametrize("fmt", [FORMAT_VERSION + 1, FORMAT_VERSION - 1, 0, "1", True])
def test_wrong_format_version_is_refused(tmp_path: Path, fmt: object) -> None:
    vdir = _write(tmp_path, "v1")
    manifest = _manifest(vdir)
    manifest["format_version"] = fmt
    _rewrite_manifest(vdir, manifest)

    message = _refused(vdir, naming="manifest.json")
    assert f"(this engine reads {FORMAT_VERSION})" in message
    if fmt == FORMAT_VERSION - 1:  # an artifact of the previous format: retrain
        assert f"incompatible artifact format {fmt} (this engine reads {FORMAT_VERSION})" in message


def test_manifest_version_must_match_directory(tmp_path: Path) -> None:
    vdir = _write(tmp_path, "v1")
    vdir.rename(tmp_path / "renamed")

    assert "'v1'" in _refused(tmp_path / "renamed", naming="manifest.json")


def test_manifest_listing_a_path_outside_the_directory_is_refused(tmp_path: Path) -> None:
    vdir = _write(tmp_path, "v1")
    manifest = _manifest(vdir)
    manifest["files"]["../v1/counts.npy"] = manifest["files"].pop("counts.npy")
    _rewrite_manifest(vdir, manifest)

    assert "bad file name" in _refused(vdir, naming="manifest.json")


def test_header_dtype_differing_from_manifest_is_refused(tmp_path: Path) -> None:
    vdir = _write(tmp_path, "v1")
    target = vdir / "counts.npy"
    np.save(target, np.arange(5, dtype=np.float64), allow_pickle=False)  # same size, other dtype
    manifest = _manifest(vdir)
    entry = manifest["files"]["counts.npy"]
    assert entry["bytes"] == target.stat().st_size
    entry["sha256"] = hashlib.sha256(target.read_bytes()).hexdigest()
    _rewrite_manifest(vdir, manifest)

    message = _refused(vdir, naming="counts.npy")
    assert "<f8" in message and "<i8" in message


def test_corrupt_npy_header_is_an_artifact_error(tmp_path: Path) -> None:
    vdir = _write(tmp_path, "v1")
    target = vdir / "counts.npy"
    data = bytearray(target.read_bytes())
    data[:6] = b"garbag"
    target.write_bytes(bytes(data))

    assert "unreadable" in _refused(vdir, naming="counts.npy", verify=False)
