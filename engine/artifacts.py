"""Versioned, checksummed model artifacts.

The trainer writes each model as an immutable version directory of ``.npy`` files plus a
``manifest.json`` recording every file's checksum, size, dtype and shape. The API memory-maps a
version and must refuse a damaged one while the previous model keeps serving, so every failure
here is an :class:`ArtifactError` with a one-line message naming the file, never a traceback.

Layout of a models directory::

    models/
        20261123T191500Z/      a complete version (renamed into place atomically)
        .tmp-20261123T191600Z/ an interrupted write: ignored by everything
        current -> 20261123T191500Z   the published version (a relative symlink)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import numpy as np
import scipy.sparse

FORMAT_VERSION: int = 2  # 2: customer segments (user_segment, user_rfm)
CURRENT = "current"

MANIFEST = "manifest.json"
_TMP_PREFIX = ".tmp-"
_T = TypeVar("_T")
_R = TypeVar("_R")
_RESERVED_KEYS = frozenset({"format_version", "version", "created", "files"})
# No leading dot (never hidden) and no path separator; ".." inside a name is refused separately.
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
# Same-second collisions get "-01".."-99", which still sorts after the bare stamp and before
# the next second, so name order stays creation order.
_MAX_SAME_SECOND = 99


class ArtifactError(Exception):
    """An artifact cannot be written or loaded; the message is one line naming the file."""

    def __init__(self, message: str) -> None:
        # Messages embed numpy/json errors; keep them one line for logs and the CLI.
        super().__init__(" ".join(message.splitlines()))


@dataclass(frozen=True, eq=False)
class Artifact:
    """A loaded model version; arrays are read-only views onto memory-mapped files."""

    path: Path
    manifest: dict[str, Any]
    arrays: Mapping[str, np.ndarray] = field(repr=False)

    @property
    def version(self) -> str:
        """The version name, identical to the directory name (checked at load)."""
        return str(self.manifest["version"])


def write_artifact(
    models_dir: str | Path,
    arrays: Mapping[str, np.ndarray],
    manifest: Mapping[str, Any],
    *,
    version: str | None = None,
) -> Path:
    """Write ``arrays`` and ``manifest`` as a new, unpublished version and return its directory.

    Everything goes into a hidden ``.tmp-<version>`` directory that is fsynced and then renamed
    into place, so a crash can never leave a half-written version that looks complete.
    """
    models = Path(models_dir)
    prepared = _prepare_arrays(arrays)
    user_manifest = _check_manifest(manifest)
    now = datetime.now(UTC)
    models.mkdir(parents=True, exist_ok=True)
    version, tmp = _claim_version(models, version, now)
    final = models / version
    try:
        written = _each(lambda item: _write_npy(tmp / f"{item[0]}.npy", item[1]), prepared.items())
        files = {f"{name}.npy": entry for name, entry in zip(prepared, written, strict=True)}
        full = {
            **user_manifest,
            "format_version": FORMAT_VERSION,
            "version": version,
            "created": now.isoformat(timespec="seconds"),
            "files": files,
        }
        _write_durably(tmp / MANIFEST, (json.dumps(full, indent=2, sort_keys=True) + "\n").encode())
        fsync_dir(tmp)
        if final.exists():  # os.rename onto an empty directory would silently succeed
            raise ArtifactError(f"{final}: version already exists")
        os.rename(tmp, final)
        fsync_dir(models)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise ArtifactError(_os_message(exc, tmp)) from exc
        raise
    return final


def publish(models_dir: str | Path, version: str) -> None:
    """Point ``models_dir/current`` at ``version`` after checking that it loads cleanly.

    The pointer is swapped with ``os.replace`` of a fresh symlink, so a concurrent reader sees
    either the old version or the new one, never a missing or half-written pointer.
    """
    models = Path(models_dir)
    _check_version_name(version)
    if not (models / version).is_dir():
        raise ArtifactError(f"{models / version}: no such version")
    _load_version(models / version, verify=True)
    link = models / f"{CURRENT}.tmp-{secrets.token_hex(4)}"
    try:
        os.symlink(version, link)
        os.replace(link, models / CURRENT)
        fsync_dir(models)
    except OSError as exc:
        link.unlink(missing_ok=True)
        raise ArtifactError(_os_message(exc, models / CURRENT)) from exc


def load_artifact(path: str | Path, *, verify: bool = True) -> Artifact:
    """Load and check a version; ``path`` is a models dir, its ``current`` link or a version dir.

    ``verify=False`` skips only the sha256 pass (reading every byte); presence, sizes, unlisted
    files, dtypes and shapes are always checked.
    """
    return _load_version(_resolve_version_dir(Path(path)), verify=verify)


def current_version(models_dir: str | Path) -> str | None:
    """The published version name, or None if nothing has been published yet."""
    link = Path(models_dir) / CURRENT
    try:
        return Path(os.readlink(link)).name
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ArtifactError(_os_message(exc, link)) from exc


def list_versions(models_dir: str | Path) -> list[str]:
    """Names of complete versions (renamed into place, with a manifest), oldest first.

    Order is by name: default names are UTC stamps, so explicit names should sort likewise.
    """
    try:
        entries = list(os.scandir(models_dir))
    except FileNotFoundError:
        return []
    return sorted(
        e.name
        for e in entries
        if _is_version_name(e.name)
        and e.is_dir(follow_symlinks=False)
        and os.path.isfile(os.path.join(e.path, MANIFEST))
    )


def csr_arrays(name: str, matrix: scipy.sparse.csr_matrix) -> dict[str, np.ndarray]:
    """Split a CSR matrix into the four plain arrays an artifact can store without pickle."""
    if not scipy.sparse.issparse(matrix) or matrix.format != "csr":
        raise TypeError(f"{name}: expected a scipy.sparse CSR matrix, got {type(matrix).__name__}")
    return {
        f"{name}.data": matrix.data,
        f"{name}.indices": matrix.indices,
        f"{name}.indptr": matrix.indptr,
        f"{name}.shape": np.asarray(matrix.shape, dtype=np.int64),
    }


def csr_from_arrays(arrays: Mapping[str, np.ndarray], name: str) -> scipy.sparse.csr_matrix:
    """Rebuild a CSR matrix from :func:`csr_arrays` output without copying the mapped arrays."""
    parts: dict[str, np.ndarray] = {}
    for part in ("data", "indices", "indptr", "shape"):
        key = f"{name}.{part}"
        if key not in arrays:
            raise ArtifactError(
                f"{key}.npy: missing from artifact (needed for CSR matrix {name!r})"
            )
        parts[part] = arrays[key]
    shape = parts["shape"]
    if shape.shape != (2,) or shape.dtype.kind not in "iu":
        raise ArtifactError(
            f"{name}.shape.npy: expected 2 integers, got {shape.dtype} {shape.shape}"
        )
    try:
        return scipy.sparse.csr_matrix(
            (parts["data"], parts["indices"], parts["indptr"]),
            shape=(int(shape[0]), int(shape[1])),
            copy=False,
        )
    except ValueError as exc:
        raise ArtifactError(f"{name}.*.npy: inconsistent CSR matrix: {exc}") from exc


# --- writing -----------------------------------------------------------------------------------


def _prepare_arrays(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Validate names and dtypes up front so a bad input never creates a directory."""
    prepared: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name) or ".." in name:
            raise ArtifactError(f"{name!r}: array name is not a safe file name")
        # C order: the API reads rows of mapped factor matrices, which must be contiguous.
        arr = np.asarray(value, order="C")
        if arr.dtype.hasobject:
            raise ArtifactError(
                f"{name}.npy: object dtype cannot be saved without pickle "
                "(store strings as a fixed-width 'U' array)"
            )
        if arr.dtype.names is not None:
            raise ArtifactError(f"{name}.npy: structured dtypes are not supported (save fields)")
        prepared[name] = arr
    return prepared


def _check_manifest(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Refuse reserved or non-JSON entries, naming the offending key."""
    checked: dict[str, Any] = {}
    for key, value in manifest.items():
        if not isinstance(key, str):
            raise ArtifactError(f"{MANIFEST}: key {key!r} is not a string")
        if key in _RESERVED_KEYS:
            raise ArtifactError(f"{MANIFEST}: key {key!r} is reserved (written by the engine)")
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ArtifactError(f"{MANIFEST}: key {key!r} is not JSON-serialisable: {exc}") from exc
        checked[key] = value
    return checked


def _claim_version(models: Path, version: str | None, now: datetime) -> tuple[str, Path]:
    """Reserve a version name by creating its temp dir; ``mkdir`` is atomic, so racing writers
    can never both claim the same name."""
    if version is not None:
        _check_version_name(version)
        candidates = [version]
    else:
        stamp = now.strftime("%Y%m%dT%H%M%SZ")
        candidates = [stamp] + [f"{stamp}-{i:02d}" for i in range(1, _MAX_SAME_SECOND + 1)]
    for candidate in candidates:
        tmp = models / f"{_TMP_PREFIX}{candidate}"
        if (models / candidate).exists():
            continue
        try:
            tmp.mkdir()
        except FileExistsError:
            continue
        if (models / candidate).exists():  # another writer finished between check and mkdir
            tmp.rmdir()
            continue
        return candidate, tmp
    if version is not None:
        raise ArtifactError(f"{models / version}: version already exists (or is being written)")
    raise ArtifactError(f"{models}: too many versions written in one second")


def _write_npy(path: Path, arr: np.ndarray) -> dict[str, Any]:
    """Save one array durably and describe it for the manifest."""
    with open(path, "x+b") as f:
        np.save(f, arr, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
        f.seek(0)
        digest = hashlib.file_digest(f, "sha256").hexdigest()
        size = os.fstat(f.fileno()).st_size
    return {"sha256": digest, "bytes": size, "dtype": arr.dtype.str, "shape": list(arr.shape)}


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    """Make renames and new entries in ``path`` survive a power loss."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- loading -----------------------------------------------------------------------------------


def _resolve_version_dir(path: Path) -> Path:
    """Follow ``current`` when given a models dir; a dir with a manifest or .npy is a version."""
    if os.path.lexists(path / CURRENT):
        path = path / CURRENT
    elif path.is_dir() and not (path / MANIFEST).exists() and not any(path.glob("*.npy")):
        raise ArtifactError(f"no model published in {path}: run `personalize train`")
    try:
        resolved = path.resolve(strict=True)
    except OSError as exc:
        problem = "points to a missing version" if path.is_symlink() else "does not exist"
        raise ArtifactError(f"{path}: {problem}") from exc
    if not resolved.is_dir():
        raise ArtifactError(f"{path}: not a directory")
    return resolved


def _load_version(vdir: Path, *, verify: bool) -> Artifact:
    manifest = _read_manifest(vdir)
    files = _manifest_files(vdir, manifest)
    extras = sorted(p.name for p in vdir.glob("*.npy") if p.name not in files)
    if extras:
        raise ArtifactError(f"{vdir / extras[0]}: present but not listed in {MANIFEST}")
    loaded = _each(lambda item: _load_npy(vdir / item[0], item[1], verify=verify), files.items())
    arrays = {name.removesuffix(".npy"): arr for name, arr in zip(files, loaded, strict=True)}
    return Artifact(path=vdir, manifest=manifest, arrays=MappingProxyType(arrays))


def _read_manifest(vdir: Path) -> dict[str, Any]:
    mpath = vdir / MANIFEST
    try:
        raw = mpath.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"{mpath}: missing (not a model version directory)") from None
    except OSError as exc:
        raise ArtifactError(_os_message(exc, mpath)) from exc
    try:
        manifest = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ArtifactError(f"{mpath}: not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{mpath}: not a JSON object")
    if "format_version" not in manifest:
        raise ArtifactError(f"{mpath}: no format_version (not a model artifact)")
    fmt = manifest["format_version"]
    if fmt != FORMAT_VERSION or isinstance(fmt, bool):
        raise ArtifactError(
            f"{mpath}: incompatible artifact format {fmt!r} (this engine reads {FORMAT_VERSION})"
        )
    if manifest.get("version") != vdir.name:
        raise ArtifactError(
            f"{mpath}: version {manifest.get('version')!r} does not match directory {vdir.name!r}"
        )
    return manifest


def _manifest_files(vdir: Path, manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``files`` table, refusing entries that could escape the directory or are malformed."""
    mpath = vdir / MANIFEST
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise ArtifactError(f"{mpath}: 'files' is missing or not an object")
    for filename, entry in files.items():
        stem = filename.removesuffix(".npy")
        if stem == filename or not _SAFE_NAME.fullmatch(stem) or ".." in stem:
            raise ArtifactError(f"{mpath}: bad file name {filename!r}")
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("sha256"), str)
            and _is_count(entry.get("bytes"))
            and isinstance(entry.get("dtype"), str)
            and isinstance(entry.get("shape"), list)
            and all(_is_count(n) for n in entry["shape"])
        ):
            raise ArtifactError(f"{mpath}: malformed entry for {filename!r}")
    return files


def _load_npy(path: Path, entry: dict[str, Any], *, verify: bool) -> np.ndarray:
    """Check one listed file against its manifest entry and memory-map it read-only."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing (listed in {MANIFEST})") from None
    except OSError as exc:
        raise ArtifactError(_os_message(exc, path)) from exc
    if size != entry["bytes"]:
        raise ArtifactError(
            f"{path}: {size} bytes, manifest says {entry['bytes']} (truncated or damaged)"
        )
    try:
        if verify:
            with open(path, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
            if digest != entry["sha256"]:
                raise ArtifactError(f"{path}: sha256 mismatch (file damaged or modified)")
        with _HEADER_PARSING:
            arr: np.ndarray = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ArtifactError(f"{path}: unreadable .npy ({exc})") from exc
    if arr.dtype.str != entry["dtype"] or list(arr.shape) != entry["shape"]:
        raise ArtifactError(
            f"{path}: header says {arr.dtype.str} {list(arr.shape)}, "
            f"manifest says {entry['dtype']} {entry['shape']}"
        )
    # A plain ndarray over the same mapping (kept alive as its base): the np.memmap subclass
    # costs microseconds on every operation and gather of the per-request hot path.
    return arr.view(np.ndarray)


# --- shared ------------------------------------------------------------------------------------

# numpy reads a .npy header with ast.literal_eval, and CPython 3.11's AST construction is not
# safe from several threads at once: now and then it raises "SystemError: AST constructor
# recursion depth mismatch" (python/cpython#106905), which refused a sound version in a CI run.
# The header and the mapping take one file at a time; the hashing, the slow part, stays parallel.
_HEADER_PARSING = threading.Lock()


def _each(function: Callable[[_T], _R], items: Iterable[_T]) -> list[_R]:
    """``function`` of every item, in order, on a thread per core: saving, hashing and fsyncing
    release the GIL, so a version's files are written and checked side by side. The first
    failure in ``items``' order is raised, once every call has returned."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return list(pool.map(function, items))


def _check_version_name(version: str) -> None:
    if not _is_version_name(version):
        raise ArtifactError(f"{version!r}: not a valid version name")


def _is_version_name(name: str) -> bool:
    """Safe, visible directory names that cannot collide with ``current`` or its temp links."""
    return (
        bool(_SAFE_NAME.fullmatch(name))
        and ".." not in name
        and name != CURRENT
        and not name.startswith(f"{CURRENT}.")
    )


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _os_message(exc: OSError, path: Path) -> str:
    return f"{exc.filename or path}: {exc.strerror or exc}"
