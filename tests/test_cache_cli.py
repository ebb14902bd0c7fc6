"""Cache housekeeping (issue 8): killed builds' temporary folders are cleaned (never a live writer's), and
`python -m retrieval_lab.cache_cli list|prune` lists the cache by kind and prunes it by age or size, LRU first."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from retrieval_lab import cache_cli
from retrieval_lab.cache import (COMPLETE_MARKER, STALE_TMP_AGE_S, WRITER_FILE, atomic_dir, clean_stale_tmp,
                                 is_complete, tmp_is_stale)
from tests.conftest import ROOT

HOUR, DAY = 3600, 86400


def age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def tmp_dir(parent: Path, name: str, pid: int | None, host: str | None = None, old: float = 2 * HOUR) -> Path:
    path = parent / f".{name}.abc12345.tmp"
    path.mkdir(parents=True)
    (path / "part.bin").write_bytes(b"x" * 100)
    if pid is not None:
        (path / WRITER_FILE).write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(), "started": 0}))
    age(path, old)
    return path


def entry(root: Path, kind: str, key: str, nbytes: int, used_ago: float) -> Path:
    with atomic_dir(root / kind / key) as tmp:
        (tmp / "data.bin").write_bytes(b"\0" * nbytes)
    age(root / kind / key, used_ago)
    return root / kind / key


# ------------------------------------------------------------------------------------- temporary folders


def test_a_build_records_its_writer_and_publishes_without_it(tmp_path):
    with atomic_dir(tmp_path / "k") as tmp:
        writer = json.loads((tmp / WRITER_FILE).read_text())
        assert writer["pid"] == os.getpid() and writer["host"] == socket.gethostname()
        (tmp / "v").write_text("x")
    assert sorted(os.listdir(tmp_path / "k")) == [COMPLETE_MARKER, "v"]


def test_only_temporary_folders_no_live_process_writes_are_stale(tmp_path):
    dead = tmp_dir(tmp_path, "dead", dead_pid())
    live = tmp_dir(tmp_path, "live", os.getpid())
    young = tmp_dir(tmp_path, "young", dead_pid(), old=60)  # its writer may not have recorded itself yet
    unrecorded = tmp_dir(tmp_path, "unrecorded", None)  # from an older version, or killed before recording
    foreign = tmp_dir(tmp_path, "foreign", 1, host="another-host", old=DAY)
    foreign_old = tmp_dir(tmp_path, "foreign-old", 1, host="another-host", old=8 * DAY)
    finished = tmp_path / "key"  # a published entry is never a temporary folder
    finished.mkdir()
    age(finished, 30 * DAY)
    others = [tmp_path / ".notes.tmp", tmp_path / ".x.abc12345.tmp"]  # not atomic_dir's folders: never touched
    others[0].mkdir()
    others[1].write_text("a file")
    for other in others:
        age(other, 30 * DAY)
    assert [tmp_is_stale(p) for p in (dead, live, young, unrecorded, foreign, foreign_old)] == [
        True, False, False, True, False, True]
    removed = clean_stale_tmp(tmp_path)
    assert sorted(removed) == sorted([dead, unrecorded, foreign_old])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (live, young, foreign, finished,
                                                                                 *others))


KILLED_BUILD = """
import os, sys, time
from retrieval_lab.cache import atomic_dir
with atomic_dir(sys.argv[1]) as tmp:
    (tmp / "half.bin").write_bytes(b"half")
    print(tmp, flush=True)
    time.sleep(600)
"""


def test_a_killed_builds_folder_is_removed_the_next_time_the_cache_is_written(tmp_path):
    kind = tmp_path / "cache" / "embeddings"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_BUILD, str(kind / "key1")], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    left = Path(proc.stdout.readline().strip())
    assert left.is_dir() and left.name.endswith(".tmp")
    age(left, 2 * HOUR)
    with atomic_dir(kind / "key2") as tmp:  # the writer is alive: its folder is kept, however old
        (tmp / "v").write_text("x")
    assert left.is_dir()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    age(left, 2 * HOUR)
    with atomic_dir(kind / "key3") as tmp:
        (tmp / "v").write_text("x")
    assert not left.exists()
    assert sorted(p.name for p in kind.iterdir()) == ["key2", "key3"]


def test_finding_an_entry_marks_it_used(tmp_path):
    path = entry(tmp_path, "bm25", "k", 10, 5 * DAY)
    data_mtime = (path / "data.bin").stat().st_mtime_ns
    assert is_complete(path)
    assert time.time() - path.stat().st_mtime < 60
    assert (path / "data.bin").stat().st_mtime_ns == data_mtime  # the files in it are not touched


# ---------------------------------------------------------------------------------------------- cache_cli


@pytest.fixture
def cache(tmp_path):
    root = tmp_path / "cache"
    entry(root, "bm25", "aaa", 1000, 20 * DAY)
    entry(root, "embeddings", "bbb", 3_000_000, 10 * DAY)
    entry(root, "embeddings", "ccc", 2_000_000, 1 * DAY)
    entry(root, "models", "ddd", 1_000_000, 2 * HOUR)
    tmp_dir(root / "faiss", "stale", dead_pid())
    tmp_dir(root / "faiss", "building", os.getpid())
    return root


def names(root: Path) -> list[str]:
    return sorted(f"{k.name}/{e.name}" for k in root.iterdir() for e in k.iterdir())


def test_list_shows_every_kind_with_sizes_and_the_leftovers(cache, capsys):
    assert cache_cli.main(["--cache-dir", str(cache), "list", "--entries"]) == 0
    out = capsys.readouterr().out
    assert f"cache: {cache} (6.0 MB in 6 entries)" in out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert lines["bm25"][1:4] == ["1", "1.0", "kB"] and lines["embeddings"][1:4] == ["2", "5.0", "MB"]
    assert lines["faiss"][1] == "2" and lines["models"][1] == "1"
    assert "embeddings/bbb" in out and "1 left by killed or failed builds" in out


def test_list_through_the_module_entry_point(cache):
    result = subprocess.run([sys.executable, "-m", "retrieval_lab.cache_cli", "list"], cwd=ROOT, text=True,
                            capture_output=True, env={**os.environ, "RETRIEVAL_LAB_CACHE": str(cache)}, timeout=120)
    assert result.returncode == 0 and f"cache: {cache}" in result.stdout and "embeddings" in result.stdout


def test_prune_by_age_removes_old_entries_and_leftovers_never_a_live_build(cache, capsys):
    cache_cli.main(["--cache-dir", str(cache), "prune", "--older-than", "5"])
    assert names(cache) == ["embeddings/ccc", "faiss/.building.abc12345.tmp", "models/ddd"]
    assert "removed 3 entries" in capsys.readouterr().out


def test_prune_by_size_removes_the_least_recently_used_first(cache):
    cache_cli.main(["--cache-dir", str(cache), "prune", "--max-size", "0.0031"])  # 3.1 MB
    # 6 MB: the stale build goes, then bm25/aaa (oldest) and embeddings/bbb; ccc + ddd + the live build stay
    assert names(cache) == ["embeddings/ccc", "faiss/.building.abc12345.tmp", "models/ddd"]
    assert is_complete(cache / "embeddings" / "ccc")  # what stays is intact


def test_a_use_moves_an_entry_to_the_back_of_the_queue(cache):
    assert is_complete(cache / "bm25" / "aaa")  # a run found it just now
    cache_cli.main(["--cache-dir", str(cache), "prune", "--max-size", "0.0011"])
    assert names(cache) == ["bm25/aaa", "faiss/.building.abc12345.tmp", "models/ddd"]


def test_dry_run_removes_nothing(cache, capsys):
    before = names(cache)
    cache_cli.main(["--cache-dir", str(cache), "prune", "--older-than", "0", "--dry-run"])
    assert names(cache) == before
    out = capsys.readouterr().out
    assert "would remove 5 entries" in out and "embeddings/bbb" in out


def test_prune_rejects_negative_limits(cache):
    with pytest.raises(SystemExit):
        cache_cli.main(["--cache-dir", str(cache), "prune", "--max-size", "-1"])


def test_stale_threshold_default():
    assert STALE_TMP_AGE_S >= 600  # a build's folder is never removed before its writer could record itself
