"""What the artifact cache holds, and pruning it: ``python -m retrieval_lab.cache_cli list|prune``.

The cache (``$RETRIEVAL_LAB_CACHE``, default ``~/.cache/retrieval_lab``, or ``--cache-dir``; runs take ``cache_dir=``)
holds ``<kind>/<key>`` folders (``bm25``, ``embeddings``, ``faiss``, ``models``), each finished one marked
``_COMPLETE``. A folder's mtime is when a run last found it (``cache.is_complete`` touches it), so pruning by size
removes the least recently used first. Temporary ``.*.tmp`` folders are builds in progress, or left by killed
ones: those no live process is writing (``cache.tmp_is_stale``) are removed by ``prune``, and by any run that
writes into the same kind.

    python -m retrieval_lab.cache_cli list [--entries]
    python -m retrieval_lab.cache_cli prune [--older-than DAYS] [--max-size GB] [--dry-run]

Removing an entry a run is reading at that moment makes that run fail; prune between runs.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from retrieval_lab.cache import COMPLETE_MARKER, STALE_TMP_AGE_S, cache_root, is_tmp, tmp_is_stale

GB = 1e9  # --max-size is in GB (10^9 bytes), as sizes are printed


@dataclass
class Entry:
    kind: str
    path: Path
    status: str  # complete | incomplete (no marker: unusable) | building (temporary, live) | stale (temporary, dead)
    bytes: int
    last_used: float  # the folder's mtime (epoch seconds)

    @property
    def name(self) -> str:
        return f"{self.kind}/{self.path.name}"


def folder_size(path: Path) -> int:
    """Bytes of the files under ``path`` (``path`` itself when a file), links not followed."""
    if not path.is_dir() or path.is_symlink():
        try:
            return path.lstat().st_size
        except OSError:
            return 0
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def scan(root: Path, min_tmp_age_s: float = STALE_TMP_AGE_S) -> list[Entry]:
    """Every entry of every kind under ``root``, oldest use first."""
    entries = []
    if not root.is_dir():
        return entries
    now = time.time()
    for kind_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(kind_dir.iterdir()):
            if is_tmp(path):
                status = "stale" if tmp_is_stale(path, min_tmp_age_s, now) else "building"
            elif path.is_dir() and (path / COMPLETE_MARKER).is_file():
                status = "complete"
            else:
                status = "incomplete"
            try:
                used = path.lstat().st_mtime
            except OSError:  # removed meanwhile
                continue
            entries.append(Entry(kind_dir.name, path, status, folder_size(path), used))
    return sorted(entries, key=lambda e: e.last_used)


def human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def list_cache(root: Path, entries_too: bool = False, out=None) -> list[Entry]:
    out = out or sys.stdout
    entries = scan(root)
    total = sum(e.bytes for e in entries)
    print(f"cache: {root} ({human(total)} in {len(entries)} entries)", file=out)
    if not entries:
        return entries
    kinds = sorted({e.kind for e in entries})
    rows = [("kind", "entries", "size", "complete", "building", "stale", "incomplete", "last used")]
    for kind in kinds:
        mine = [e for e in entries if e.kind == kind]
        count = {s: sum(e.status == s for e in mine) for s in ("complete", "building", "stale", "incomplete")}
        rows.append((kind, str(len(mine)), human(sum(e.bytes for e in mine)), *map(str, count.values()),
                     _when(max(e.last_used for e in mine))))
    _table(rows, out)
    if entries_too:
        print(file=out)
        _table([("entry", "status", "size", "last used")]
               + [(e.name, e.status, human(e.bytes), _when(e.last_used)) for e in reversed(entries)], out)
    leftovers = [e for e in entries if e.status in ("stale", "incomplete")]
    if leftovers:
        print(f"{len(leftovers)} left by killed or failed builds ({human(sum(e.bytes for e in leftovers))}): "
              f"`python -m retrieval_lab.cache_cli prune` removes them", file=out)
    return entries


def _table(rows, out) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip(),
              file=out)


def _remove(path: Path) -> None:
    """Unpublish first (a rename: no run finds a half-deleted entry), then delete; an interrupted delete leaves a
    temporary folder that the next clean-up removes."""
    target = path
    if not is_tmp(path):
        target = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")  # as atomic_dir names its folders
        os.replace(path, target)
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target, ignore_errors=True)
    else:
        target.unlink(missing_ok=True)


def prune(root: Path, older_than_days: float | None = None, max_size_gb: float | None = None,
          dry_run: bool = False, min_tmp_age_s: float = STALE_TMP_AGE_S, out=None) -> list[Entry]:
    """Remove stale temporary folders and incomplete entries (older than ``min_tmp_age_s``), then complete entries
    last used more than
    ``older_than_days`` ago, then the least recently used complete entries until the cache holds at most
    ``max_size_gb``; builds in progress are never touched. Returns what was (or, with ``dry_run``, would be)
    removed."""
    if older_than_days is not None and older_than_days < 0:
        raise ValueError(f"--older-than {older_than_days}: must be >= 0 days")
    if max_size_gb is not None and max_size_gb < 0:
        raise ValueError(f"--max-size {max_size_gb}: must be >= 0 GB")
    out = out or sys.stdout
    entries = scan(root, min_tmp_age_s)
    settled = time.time() - min_tmp_age_s  # an incomplete folder younger than this may still be being written
    doomed = [e for e in entries if e.status == "stale" or (e.status == "incomplete" and e.last_used < settled)]
    kept = [e for e in entries if e not in doomed]
    if older_than_days is not None:
        cutoff = time.time() - older_than_days * 86400
        old = [e for e in kept if e.status == "complete" and e.last_used < cutoff]
        doomed += old
        kept = [e for e in kept if e not in old]
    if max_size_gb is not None:
        total = sum(e.bytes for e in kept)
        for e in [e for e in kept if e.status == "complete"]:  # oldest use first
            if total <= max_size_gb * GB:
                break
            doomed.append(e)
            total -= e.bytes
    verb = "would remove" if dry_run else "removed"
    for e in doomed:
        if not dry_run:
            try:
                _remove(e.path)
            except OSError as error:
                print(f"could not remove {e.path}: {error}", file=out)
                continue
        print(f"{verb} {e.name} ({e.status}, {human(e.bytes)}, last used {_when(e.last_used)})", file=out)
    left = sum(e.bytes for e in entries) - sum(e.bytes for e in doomed)
    print(f"{verb} {len(doomed)} entries, {human(sum(e.bytes for e in doomed))}; the cache {root} "
          f"{'would hold' if dry_run else 'holds'} {human(left)}", file=out)
    return doomed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m retrieval_lab.cache_cli", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="the cache folder (default: $RETRIEVAL_LAB_CACHE, else ~/.cache/retrieval_lab)")
    sub = parser.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="what the cache holds, by kind, with sizes")
    ls.add_argument("--entries", action="store_true", help="also every entry, most recently used first")
    pr = sub.add_parser("prune", help="remove leftovers of killed builds, and entries by age or total size")
    pr.add_argument("--older-than", type=float, metavar="DAYS", help="remove entries last used more than DAYS ago")
    pr.add_argument("--max-size", type=float, metavar="GB",
                    help="remove the least recently used entries until the cache holds at most GB (10^9 bytes)")
    pr.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    args = parser.parse_args(argv)
    root = (args.cache_dir or cache_root()).expanduser()
    if args.command == "list":
        list_cache(root, entries_too=args.entries)
        return 0
    try:
        prune(root, args.older_than, args.max_size, dry_run=args.dry_run)
    except ValueError as error:
        parser.error(str(error))
    return 0


if __name__ == "__main__":
    sys.exit(main())
