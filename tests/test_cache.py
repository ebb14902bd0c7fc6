"""Cache keys (fingerprint, file_digest) and atomic directories."""

import dataclasses
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from retrieval_lab.cache import COMPLETE_MARKER, atomic_dir, cache_root, file_digest, fingerprint, is_complete


def test_fingerprint_is_stable_short_and_order_insensitive_for_mappings():
    key = fingerprint({"k1": 0.9, "b": 0.4}, "scifact", [1, 2])
    assert len(key) == 16 and all(c in "0123456789abcdef" for c in key)
    assert key == fingerprint({"b": 0.4, "k1": 0.9}, "scifact", [1, 2])
    # a hard-coded value: the key must not drift between runs or Python versions
    assert fingerprint("x") == hashlib.sha256(b'["x"]').hexdigest()[:16]
    assert len(fingerprint("x", length=64)) == 64


def test_fingerprint_distinguishes_values_and_types():
    keys = {fingerprint(v) for v in [1, 1.0, True, "1", b"1", [1], (1, 2), None, {"a": 1}, {"a": 2}]}
    assert len(keys) == 10  # all different
    assert fingerprint((1,)) == fingerprint([1])
    assert fingerprint("a", "b") != fingerprint("ab") != fingerprint(["a", "b"])
    assert fingerprint(b"abc") != fingerprint(b"abd")


def test_fingerprint_accepts_omegaconf_dataclasses_numpy_and_rejects_opaque_objects():
    cfg = OmegaConf.create({"model": {"name": "bert", "lr": 1e-5}, "ref": "${model.name}"})
    assert fingerprint(cfg) == fingerprint({"model": {"name": "bert", "lr": 1e-5}, "ref": "bert"})

    @dataclasses.dataclass
    class Cfg:
        depth: int = 100

    assert fingerprint(Cfg()) == fingerprint(Cfg(100)) != fingerprint(Cfg(50))
    assert fingerprint(np.int64(3)) == fingerprint(3) and fingerprint(np.float32(0.5)) == fingerprint(0.5)
    assert fingerprint({1, 2, 3}) == fingerprint({3, 2, 1})
    with pytest.raises(TypeError, match="cannot hash"):
        fingerprint(object())
    with pytest.raises(TypeError, match="cannot hash"):
        fingerprint(np.zeros(3))


def test_file_digest_matches_sha256(tmp_path):
    f = tmp_path / "f.bin"
    payload = os.urandom(3 * (1 << 20) + 17)  # spans several chunks
    f.write_bytes(payload)
    assert file_digest(f) == hashlib.sha256(payload).hexdigest()


def test_atomic_dir_publishes_on_success(tmp_path):
    final = tmp_path / "indexes" / "bm25" / "abc123"
    with atomic_dir(final) as tmp:
        assert tmp.is_dir() and tmp.parent == final.parent and not final.exists()
        (tmp / "index.bin").write_bytes(b"data")
        assert not is_complete(tmp)
    assert is_complete(final) and (final / "index.bin").read_bytes() == b"data"
    assert sorted(os.listdir(final.parent)) == ["abc123"]
    assert sorted(os.listdir(final)) == [COMPLETE_MARKER, "index.bin"]


def test_atomic_dir_leaves_nothing_behind_on_exception(tmp_path):
    final = tmp_path / "k"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_dir(final) as tmp:
            (tmp / "half.bin").write_bytes(b"half")
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
    assert not is_complete(final)


def test_atomic_dir_keeps_a_finished_one_and_replaces_a_half_built_one(tmp_path):
    final = tmp_path / "k"
    with atomic_dir(final) as tmp:
        (tmp / "v").write_text("first")
    with atomic_dir(final) as tmp:  # a racing writer with the same key finishes second
        (tmp / "v").write_text("second")
    assert (final / "v").read_text() == "first" and os.listdir(tmp_path) == ["k"]

    raced = tmp_path / "r"
    with atomic_dir(raced) as ours:
        with atomic_dir(raced) as theirs:  # another process publishes the same key while we build
            (theirs / "v").write_text("theirs")
        (ours / "v").write_text("ours")
    assert (raced / "v").read_text() == "theirs" and sorted(os.listdir(tmp_path)) == ["k", "r"]

    half = tmp_path / "h"
    half.mkdir()
    (half / "junk").write_text("partial")  # left by a crashed non-atomic writer: no marker
    assert not is_complete(half)
    with atomic_dir(half) as tmp:
        (tmp / "v").write_text("fresh")
    assert sorted(os.listdir(half)) == [COMPLETE_MARKER, "v"]


def test_cache_root_env(monkeypatch, tmp_path):
    monkeypatch.setenv("RETRIEVAL_LAB_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv("RETRIEVAL_LAB_CACHE")
    assert cache_root() == Path.home() / ".cache" / "retrieval_lab"


def test_write_text_atomic_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    from retrieval_lab.cache import write_text_atomic

    path = tmp_path / "results.md"
    write_text_atomic(path, "old\n")
    assert path.read_text() == "old\n"

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr("retrieval_lab.cache.os.replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomic(path, "new, half written")
    assert path.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["results.md"]
