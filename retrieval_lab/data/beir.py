"""Local BEIR-layout folders.

::

    <path>/corpus.jsonl        {"_id", "title", "text"} per line
    <path>/queries.jsonl       {"_id", "text"} per line
    <path>/qrels/<split>.tsv   "query-id corpus-id score" header (optional), one judgment per line
    <path>/runs/*.trec         optional bundled first-stage runs, registered by file stem
    <path>/collection.yaml     optional settings of the collection (all keys optional):
                                   name: dl20                  # the collection's name when the config gives none
                                   rel_threshold: 2            # binary metrics count grade >= 2 as relevant
                                   default_run: bm25           # the bundled run retriever=run uses (runs/bm25.trec,
                                                               # or a TREC file's path relative to the folder)
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
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
from retrieval_lab.data.errors import DATA_HINT, CollectionError, DataWarning
from retrieval_lab.data.trec import MAX_UNKNOWN_QUERY_SHARE, _read_qrels, _register_runs

__all__ = ["load_beir", "read_queries_jsonl", "beir_splits", "read_settings", "SETTINGS_FILE"]

#: The optional settings file of a collection folder (see the module docstring).
SETTINGS_FILE = "collection.yaml"
_SETTINGS_KEYS = {"name": str, "rel_threshold": int, "default_run": str}

log = logging.getLogger(__name__)

_SPLIT_ORDER = {"train": 0, "dev": 1, "validation": 1, "val": 1, "test": 2}


def load_beir(
    path: str | os.PathLike,
    name: str | None = None,
    splits: Sequence[str] | str | None = None,
    rel_threshold: int | None = None,
    unknown_docs: str = "keep",
    max_unknown_query_share: float = MAX_UNKNOWN_QUERY_SHARE,
) -> Collection:
    """Load a BEIR-layout folder into a `Collection`.

    ``splits``: the qrels splits to load (default: every ``qrels/*.tsv``). The fingerprint is the sha256 of
    the bytes of every file read (corpus, queries, the chosen qrels, bundled runs) plus the options that
    change the content. Judgments naming unknown queries are skipped with a warning (an error above
    ``max_unknown_query_share`` of the judged queries); for unknown documents see
    `retrieval_lab.data.trec.read_qrels` (``unknown_docs``).

    The folder's optional ``collection.yaml`` gives the name (when ``name`` is None), the relevance threshold
    (when ``rel_threshold`` is None; else ``rel_threshold`` wins, with a warning if they differ) and the
    default bundled run. Without it, ``rel_threshold`` None means 1.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        kind = "is a file, not a folder" if root.exists() else "not found"
        raise CollectionError(f"BEIR collection folder {kind}: {root}. {DATA_HINT}")
    corpus_file, queries_file = root / "corpus.jsonl", root / "queries.jsonl"
    require_file(corpus_file, "corpus file")
    require_file(queries_file, "queries file")

    settings = read_settings(root)
    split_names = _resolve_splits(root, splits)
    corpus = Corpus.from_jsonl(corpus_file)
    q_hasher = hashlib.sha256()
    queries = _read_queries_jsonl(queries_file, q_hasher)

    qrels, digests = {}, {}
    for split in split_names:
        hasher = hashlib.sha256()
        qrels[split] = _read_qrels(root / "qrels" / f"{split}.tsv", queries, corpus, unknown_docs, hasher,
                                   max_unknown_query_share)
        digests[split] = hasher.hexdigest()

    runs_dir = root / "runs"
    run_files = {p.stem: p for p in sorted(runs_dir.glob("*.trec"))} if runs_dir.is_dir() else {}
    default_run = settings.get("default_run")
    if default_run is not None and default_run not in run_files:
        run_file = root / default_run
        if not run_file.is_file():
            raise CollectionError(
                f"{root / SETTINGS_FILE}: default_run {default_run!r} is neither a bundled run "
                f"(runs/<name>.trec: {sorted(run_files)}) nor a file under {root}"
            )
        default_run = run_file.stem if run_file.stem not in run_files else default_run
        run_files[default_run] = run_file
    run_paths, run_digests = _register_runs(run_files)
    threshold = _threshold(root, rel_threshold, settings.get("rel_threshold"))

    fp = combine_fingerprints({
        "loader": "beir",
        "corpus": corpus.fingerprint,
        "queries": q_hasher.hexdigest(),
        "qrels": digests,
        "unknown_docs": unknown_docs,
        "runs": run_digests,
    })
    return Collection(
        name=name or settings.get("name") or root.name,
        corpus=corpus,
        queries=queries,
        qrels=qrels,
        rel_threshold=threshold,
        runs=run_paths,
        fingerprint=fp,
        default_run=default_run,
    )


def read_settings(path: str | os.PathLike) -> dict:
    """The folder's ``collection.yaml`` as a dict (empty when there is none); an unknown key or a wrong type is a
    `CollectionError` naming the file and the key."""
    file = Path(path) / SETTINGS_FILE
    if not file.is_file():
        return {}
    import yaml

    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise CollectionError(f"{file}: not a valid YAML file ({e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CollectionError(f"{file}: expected a mapping of settings ({', '.join(_SETTINGS_KEYS)}), "
                              f"got {type(data).__name__}")
    for key, value in data.items():
        if key not in _SETTINGS_KEYS:
            raise CollectionError(f"{file}: unknown key {key!r}; the keys are {', '.join(_SETTINGS_KEYS)}")
        kind = _SETTINGS_KEYS[key]
        if isinstance(value, bool) or not isinstance(value, kind) or (kind is str and not value.strip()):
            raise CollectionError(f"{file}: {key} must be a{'n integer' if kind is int else ' non-empty string'}, "
                                  f"got {value!r}")
        if key == "rel_threshold" and value < 1:
            raise CollectionError(f"{file}: rel_threshold must be >= 1, got {value}")
    return data


def _threshold(root: Path, given: int | None, from_file: int | None) -> int:
    if given is None:
        if from_file is not None:
            log.info("%s: binary metrics count grade >= %d as relevant (rel_threshold, from %s)",
                     root.name, from_file, SETTINGS_FILE)
        return from_file if from_file is not None else 1
    if from_file is not None and from_file != given:
        warnings.warn(
            f"{root / SETTINGS_FILE} sets rel_threshold: {from_file}, but the config sets {given}, which is used "
            f"(dataset.rel_threshold or eval.rel_threshold)",
            DataWarning,
            stacklevel=3,
        )
    return given


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
