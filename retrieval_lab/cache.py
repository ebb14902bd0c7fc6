"""Cache keys and atomic writes.

A stage's artifact (index, encoded corpus, run, checkpoint) lives under ``cache_root() / <stage> / <key>``
where the key is `fingerprint(...)` of everything it depends on: the relevant config AND the content of its
inputs (``collection.fingerprint``, `file_digest` of an upstream file). Artifacts are written with
`atomic_dir`, so a half-built one is never mistaken for a finished one (`is_complete`).

Housekeeping: a build's temporary folder holds ``_WRITER`` (the writing process's pid and host), so a folder
left by a killed build is recognised and removed (`clean_stale_tmp`, run whenever `atomic_dir` writes into a kind's
folder) while one another live process is still writing is kept. `is_complete` finding an artifact touches its
folder, so a folder's mtime is when it was last used: ``python -m retrieval_lab.cache_cli`` lists the cache and
prunes it by age or size, least recently used first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePath

__all__ = ["fingerprint", "file_digest", "model_fingerprint", "run_digest", "atomic_dir", "is_complete", "cache_root",
           "write_text_atomic", "clean_stale_tmp", "is_tmp", "tmp_is_stale", "COMPLETE_MARKER", "KEY_VERSION",
           "STALE_TMP_AGE_S"]

#: bumped whenever what a cached artifact holds changes meaning (a trained model's key includes it), so a new
#: version of the code never reuses an old artifact built under other rules
KEY_VERSION = 2

COMPLETE_MARKER = "_COMPLETE"
WRITER_FILE = "_WRITER"  # inside a temporary build folder: {"pid", "host", "started"} of the process writing it
#: a temporary folder younger than this is never removed (its writer may not have written WRITER_FILE yet)
STALE_TMP_AGE_S = 3600.0
#: one written by another host (whose processes cannot be checked from here) is removed after this long
FOREIGN_TMP_AGE_S = 7 * 86400.0
_CHUNK = 1 << 20
#: the name `atomic_dir` gives its temporary folder (``tempfile.mkdtemp``: 8 random characters); `clean_stale_tmp`
#: removes nothing else, so another program's ``.tmp`` files in a folder we write into are never touched
_ATOMIC_TMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def cache_root() -> Path:
    """``$RETRIEVAL_LAB_CACHE`` if set (and non-empty), else ``~/.cache/retrieval_lab``."""
    root = os.environ.get("RETRIEVAL_LAB_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "retrieval_lab"


def fingerprint(*parts, length: int = 16) -> str:
    """A stable short hex key (sha256 prefix) of ``parts``.

    Parts may be JSON-able values (dict keys are sorted, so insertion order does not matter), OmegaConf
    containers (resolved), dataclasses, tuples/sets, enums, `bytes` (hashed by content) and paths (hashed
    by their string, NOT their content: use `file_digest` for content). Anything else raises `TypeError`
    rather than falling back to ``repr`` (which may hold memory addresses and would silently break reuse).
    ``1`` and ``1.0`` and ``True`` give different keys.
    """
    if not 1 <= length <= 64:
        raise ValueError(f"length must be in 1..64, got {length}")
    canonical = json.dumps([_canonical(p) for p in parts], sort_keys=True, ensure_ascii=False, allow_nan=False,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:length]


def _canonical(value):
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return {"__bool__": value}
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return {"__float__": repr(value)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"__bytes__": hashlib.sha256(bytes(value)).hexdigest()}
    if isinstance(value, PurePath):
        return {"__path__": str(value)}
    if isinstance(value, enum.Enum):
        return {"__enum__": f"{type(value).__name__}.{value.name}", "value": _canonical(value.value)}
    if _is_omegaconf(value):
        from omegaconf import OmegaConf

        return _canonical(OmegaConf.to_container(value, resolve=True))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"__dataclass__": type(value).__name__,
                "fields": {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise TypeError(f"fingerprint: mapping keys must be str or int, got {key!r}")
            skey = str(key)
            if skey in out:
                raise TypeError(f"fingerprint: mapping has keys that collide as strings: {key!r}")
            out[skey] = _canonical(item)
        return out
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, (set, frozenset)):
        items = [_canonical(v) for v in value]
        return {"__set__": sorted(items, key=lambda x: json.dumps(x, sort_keys=True))}
    item = getattr(value, "item", None)  # numpy / torch scalars
    if callable(item) and getattr(value, "shape", None) in ((), None) and type(value).__module__ != "builtins":
        try:
            return _canonical(item())
        except (TypeError, ValueError):
            pass
    raise TypeError(f"fingerprint: cannot hash a {type(value).__module__}.{type(value).__name__} stably; "
                    f"pass its content (e.g. file_digest(path), a dict of its settings)")


def _is_omegaconf(value) -> bool:
    return type(value).__module__.startswith("omegaconf")


def file_digest(path: str | os.PathLike) -> str:
    """Full sha256 hex of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


#: files of a model folder that do not change what the model computes (the training record written beside it)
_NOT_MODEL = frozenset({"training.json", COMPLETE_MARKER})
_MODEL_SUFFIXES = frozenset({".safetensors", ".bin", ".json", ".txt", ".model"})


def model_fingerprint(path: str | os.PathLike) -> str:
    """Content hash of a model: its folder's weights, config and tokenizer files; for a Hub name, the name.

    Two folders with the same files give the same key wherever they are; a retrained checkpoint never reuses a
    cache built from the old weights. ``training.json`` (how the model was trained) is left out.
    """
    folder = Path(os.path.expanduser(os.fspath(path)))
    if not folder.is_dir():
        return fingerprint("hub", os.fspath(path))
    files = sorted(p for p in folder.rglob("*")
                   if p.is_file() and p.suffix in _MODEL_SUFFIXES and p.name not in _NOT_MODEL)
    if not files:
        raise ValueError(f"{folder} holds no model files (config.json, weights): not a model folder")
    return fingerprint("folder", *[(str(p.relative_to(folder)), file_digest(p)) for p in files])


def run_digest(run: Mapping[str, Mapping[str, float]]) -> str:
    """Content hash of a Run (qid -> doc id -> score): the same rankings give the same digest, whatever file or
    stage they came from and in whatever order the dicts were filled."""
    h = hashlib.sha256()
    for qid in sorted(run):
        h.update(json.dumps([qid, sorted((str(d), repr(float(s))) for d, s in run[qid].items())],
                            ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    return h.hexdigest()


def is_complete(path: str | os.PathLike) -> bool:
    """True when ``path`` is a directory finished by `atomic_dir` (it holds the completion marker).

    A complete folder found here is about to be used: its mtime is set to now (the folder only, never a file in
    it), so ``cache_cli prune`` removes the least recently used first. A read-only cache is left as it is."""
    path = Path(path)
    if not (path / COMPLETE_MARKER).is_file():
        return False
    with contextlib.suppress(OSError):
        os.utime(path)
    return True


def is_tmp(path: str | os.PathLike) -> bool:
    """A temporary sibling written by `atomic_dir` or `write_text_atomic` (``.<name>.<random>.tmp``)."""
    name = Path(path).name
    return name.startswith(".") and name.endswith(".tmp")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except (OSError, ValueError, OverflowError):
        return False
    return True


def tmp_is_stale(path: str | os.PathLike, min_age_s: float = STALE_TMP_AGE_S, now: float | None = None) -> bool:
    """True for a temporary folder (or file) no live process is writing: older than ``min_age_s`` AND its writer
    (``_WRITER``: pid on this host) has exited; one without a writer record (a file, or a folder from an older
    version or killed before recording it) once older than ``min_age_s``; another host's after
    ``FOREIGN_TMP_AGE_S`` (its processes cannot be checked from here)."""
    path = Path(path)
    now = time.time() if now is None else now
    try:
        age = now - path.lstat().st_mtime
    except OSError:
        return False
    if age < min_age_s:
        return False
    if not path.is_dir():
        return True
    try:
        writer = json.loads((path / WRITER_FILE).read_text(encoding="utf-8"))
        pid, host = int(writer["pid"]), str(writer["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return True
    if host != socket.gethostname():
        return age >= max(min_age_s, FOREIGN_TMP_AGE_S)
    return not _pid_alive(pid)


def clean_stale_tmp(folder: str | os.PathLike, min_age_s: float = STALE_TMP_AGE_S) -> list[Path]:
    """Remove the stale (`tmp_is_stale`) temporary folders of `atomic_dir` directly under ``folder`` (a cache kind's
    folder, where `atomic_dir` builds); return what was removed. Only folders named as `atomic_dir` names them;
    temporary files are left to ``cache_cli prune``. Never raises: housekeeping must not fail a run."""
    removed: list[Path] = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        if not _ATOMIC_TMP.match(entry.name) or not entry.is_dir() or entry.is_symlink():
            continue
        if not tmp_is_stale(entry, min_age_s, now):
            continue
        try:
            shutil.rmtree(entry)
            removed.append(entry)
        except OSError:  # another process removed it first, or no permission: leave it
            continue
    return removed


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary sibling and a rename: readers see the old file or the new
    one, never half of it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(final_path: str | os.PathLike) -> Iterator[Path]:
    """Build a directory under a temporary sibling name; publish it at ``final_path`` only on success.

    Yields the (empty) temporary directory. On normal exit a ``_COMPLETE`` marker is written inside it and it
    is renamed to ``final_path``; on an exception it is removed and the exception propagates.
    If ``final_path`` is already complete when we finish (another process won the race on the same key),
    ours is discarded and theirs kept; an incomplete leftover at ``final_path`` is replaced.
    """
    final = Path(final_path)
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_tmp(final.parent)  # builds killed earlier (their writer is gone) leave nothing behind for long
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        writer = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        (tmp / WRITER_FILE).write_text(json.dumps(writer), encoding="utf-8")
        yield tmp
        (tmp / WRITER_FILE).unlink(missing_ok=True)  # the published folder holds only what the caller wrote
        (tmp / COMPLETE_MARKER).write_text("complete\n", encoding="utf-8")
        if final.exists() or final.is_symlink():
            if is_complete(final):
                shutil.rmtree(tmp)
                return
            if final.is_dir() and not final.is_symlink():
                shutil.rmtree(final)
            else:
                final.unlink()
        try:
            os.replace(tmp, final)
        except OSError:
            if not is_complete(final):  # lost a race to a writer that published the same key: keep theirs
                raise
            shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
