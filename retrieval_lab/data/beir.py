"""Local BEIR-layout folders.

::

    <path>/corpus.jsonl        {"_id", "title", "text"} per line
    <path>/queries.jsonl       {"_id", "text"} per line
    <path>/qrels/<split>.tsv   "query-id corpus-id score" header (optional), one judgment per line
    <path>/runs/*.trec         optional bundled first-stage runs, registered by file stem
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from retrieval_lab.data.collection import (
    Collection,
    Corpus,
    _as_id,
    combine_fingerprints,
    iter_lines,
    parse_json_line,
    require_file,
)
from retrieval_lab.data.errors import DATA_HINT, CollectionError
from retrieval_lab.data.trec import _read_qrels, _register_runs

__all__ = ["load_beir", "read_queries_jsonl", "beir_splits"]

_SPLIT_ORDER = {"train": 0, "dev": 1, "validation": 1, "val": 1, "test": 2}


def load_beir(
    path: str | os.PathLike,
    name: str | None = None,
    splits: Sequence[str] | str | None = None,
    rel_threshold: int = 1,
    unknown_docs: str = "keep",
) -> Collection:
    """Load a BEIR-layout folder into a `Collection`.

    ``splits``: the qrels splits to load (default: every ``qrels/*.tsv``). The fingerprint is the sha256 of
    the bytes of every file read (corpus, queries, the chosen qrels, bundled runs) plus the options that
    change the content. Judgments naming unknown queries are skipped with a warning; for unknown documents
    see `retrieval_lab.data.trec.read_qrels` (``unknown_docs``).
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        kind = "is a file, not a folder" if root.exists() else "not found"
        raise CollectionError(f"BEIR collection folder {kind}: {root}. {DATA_HINT}")
    corpus_file, queries_file = root / "corpus.jsonl", root / "queries.jsonl"
    require_file(corpus_file, "corpus file")
    require_file(queries_file, "queries file")

    split_names = _resolve_splits(root, splits)
    corpus = Corpus.from_jsonl(corpus_file)
    q_hasher = hashlib.sha256()
    queries = _read_queries_jsonl(queries_file, q_hasher)

    qrels, digests = {}, {}
    for split in split_names:
        hasher = hashlib.sha256()
        qrels[split] = _read_qrels(root / "qrels" / f"{split}.tsv", queries, corpus, unknown_docs, hasher)
        digests[split] = hasher.hexdigest()

    runs_dir = root / "runs"
    run_files = {p.stem: p for p in sorted(runs_dir.glob("*.trec"))} if runs_dir.is_dir() else {}
    run_paths, run_digests = _register_runs(run_files)

    fp = combine_fingerprints({
        "loader": "beir",
        "corpus": corpus.fingerprint,
        "queries": q_hasher.hexdigest(),
        "qrels": digests,
        "unknown_docs": unknown_docs,
        "runs": run_digests,
    })
    return Collection(
        name=name or root.name,
        corpus=corpus,
        queries=queries,
        qrels=qrels,
        rel_threshold=rel_threshold,
        runs=run_paths,
        fingerprint=fp,
    )


def beir_splits(path: str | os.PathLike) -> list[str]:
    """The splits a BEIR folder has judgments for (``qrels/*.tsv`` stems), train/dev/test first."""
    qrels_dir = Path(path) / "qrels"
    if not qrels_dir.is_dir():
        return []
    stems = [p.stem for p in qrels_dir.glob("*.tsv") if p.is_file()]
    return sorted(stems, key=lambda s: (_SPLIT_ORDER.get(s, 3), s))


def _resolve_splits(root: Path, splits: Sequence[str] | str | None) -> list[str]:
    available = beir_splits(root)
    if splits is None:
        if not available:
            raise CollectionError(f"{root / 'qrels'}: no qrels files (<split>.tsv) found")
        return available
    wanted = [splits] if isinstance(splits, str) else list(splits)
    if not wanted:
        raise CollectionError(f"{root}: the list of splits to load is empty")
    for split in wanted:
        qfile = root / "qrels" / f"{split}.tsv"
        if not qfile.is_file():
            raise CollectionError(f"qrels file for split {split!r} not found: {qfile} (available splits: {available})")
    return list(dict.fromkeys(wanted))


def read_queries_jsonl(path: str | os.PathLike) -> dict[str, str]:
    """``{qid: text}`` from a BEIR queries.jsonl (``{"_id", "text"}`` per line), streamed line by line."""
    return _read_queries_jsonl(Path(path), None)


def _read_queries_jsonl(path: Path, hasher) -> dict[str, str]:
    require_file(path, "queries file")
    queries: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for lineno, line in iter_lines(path, hasher):
        if not line.strip():
            continue
        record = parse_json_line(path, lineno, line)
        if "_id" not in record:
            raise CollectionError(f"{path}:{lineno}: query has no _id field")
        qid = _as_id(record["_id"], path, lineno)
        if "text" not in record or not isinstance(record["text"], str):
            raise CollectionError(f"{path}:{lineno}: query {qid!r} has no text")
        if qid in queries:
            raise CollectionError(f"{path}:{lineno}: duplicate query id {qid!r} (first on line {first_line[qid]})")
        queries[qid] = record["text"]
        first_line[qid] = lineno
    if not queries:
        raise CollectionError(f"{path}: no queries")
    return queries
