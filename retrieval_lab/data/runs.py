"""Runs: the currency between stages. A `Run` is ``{qid: {docid: score}}``; files are TREC run format.

TREC format: one line per (query, document): ``qid Q0 docid rank score tag``. Ranks in a file are ignored
on reading (as trec_eval does); order comes from the scores. On writing, documents are sorted by score
descending, ties broken by docid descending (trec_eval), ranks from 1; queries keep the run's (insertion) order, so
reading and re-writing a file sorted that way reproduces it byte for byte.
"""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from collections.abc import Container, Mapping
from pathlib import Path

from retrieval_lab.data.collection import iter_lines, require_file
from retrieval_lab.data.errors import CollectionError, DataWarning

__all__ = ["Run", "read_trec_run", "write_trec_run", "cut", "cut_depth", "ranked"]

Run = dict[str, dict[str, float]]


def read_trec_run(
    path: str | os.PathLike,
    known_queries: Container[str] | None = None,
    known_docs: Container[str] | None = None,
    unknown_docs: str = "keep",
) -> Run:
    """Read a TREC run file.

    Lines naming a query not in ``known_queries`` (when given; any container: a dict of topics, a set) are
    skipped and counted in a `DataWarning`. Documents not in ``known_docs`` (a `Corpus`, a set) are kept in
    their places by default (``unknown_docs="keep"``): a ranking is evaluated as given, and such a document
    counts as non-relevant unless judged; dropping it would move the documents below it up and inflate
    the scores. They are counted in a `DataWarning` with examples; ``unknown_docs="skip"`` drops them instead.
    A run none of whose documents is in ``known_docs`` is a `CollectionError` (the wrong corpus or run).
    A malformed line (not 6 columns, a non-numeric rank or score) or a repeated (qid, docid) pair raises
    `CollectionError` naming the file and line.
    """
    if unknown_docs not in ("keep", "skip"):
        raise ValueError(f"unknown_docs must be 'keep' or 'skip', got {unknown_docs!r}")
    path = Path(path)
    require_file(path, "run file")
    run: Run = {}
    unknown_q = 0
    unknown_d: dict[str, int] = {}  # unknown document -> lines
    unknown_d_queries: set[str] = set()
    n_docs = 0
    for lineno, line in iter_lines(path):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 6:
            raise CollectionError(
                f"{path}:{lineno}: expected 6 columns 'qid Q0 docid rank score tag', got {len(fields)}: {line[:120]!r}"
            )
        qid, _q0, docid, rank, score, _tag = fields
        try:
            int(rank)
            value = float(score)
        except ValueError:
            raise CollectionError(
                f"{path}:{lineno}: rank must be an integer and score a number, got rank={rank!r} score={score!r}"
            ) from None
        if math.isnan(value):
            raise CollectionError(f"{path}:{lineno}: score is NaN")
        if known_queries is not None and qid not in known_queries:
            unknown_q += 1
            continue
        n_docs += 1
        if known_docs is not None and docid not in known_docs:
            unknown_d[docid] = unknown_d.get(docid, 0) + 1
            unknown_d_queries.add(qid)
            if unknown_docs == "skip":
                continue
        docs = run.setdefault(qid, {})
        if docid in docs:
            raise CollectionError(f"{path}:{lineno}: document {docid!r} appears twice for query {qid!r}")
        docs[docid] = value
    n_unknown_d = sum(unknown_d.values())
    if known_docs is not None and n_docs and n_unknown_d == n_docs:
        raise CollectionError(
            f"{path}: none of its {n_docs} ranked documents is in the corpus (e.g. {_examples(unknown_d)}): "
            "the run is for another collection, or its document ids are written differently"
        )
    if unknown_q:
        warnings.warn(f"{path}: skipped {unknown_q} run line(s) naming queries not in the topics", DataWarning,
                      stacklevel=2)
    if n_unknown_d:
        action = ("kept in their places: they count as non-relevant unless judged" if unknown_docs == "keep"
                  else "skipped: the documents below them moved up")
        warnings.warn(
            f"{path}: {n_unknown_d} ranked document(s) of {len(unknown_d_queries)} query(ies) are not in the corpus "
            f"({len(unknown_d)} distinct, e.g. {_examples(unknown_d)}); {action}",
            DataWarning,
            stacklevel=2,
        )
    return run


def _examples(ids, n: int = 5) -> str:
    ids = list(ids)
    return ", ".join(repr(i) for i in ids[:n]) + (f" and {len(ids) - n} more" if len(ids) > n else "")


def ranked(scores: Mapping[str, float]) -> list[tuple[str, float]]:
    """``(docid, score)`` pairs by score descending, ties broken by docid descending.

    That is trec_eval's order (and what ``retrieval_lab.evaluation`` hands to ranx), so a cut at depth k
    keeps exactly the documents a metric@k sees."""
    items = [(str(d), float(s)) for d, s in scores.items()]
    for docid, score in items:
        if math.isnan(score):
            raise ValueError(f"score of document {docid!r} is NaN")
    items.sort(key=lambda kv: (kv[1], kv[0]), reverse=True)
    return items


def cut(run: Mapping[str, Mapping[str, float]], depth: int) -> Run:
    """The top ``depth`` documents of every query (a new run; queries keep their order)."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive integer, got {depth!r}")
    return {qid: dict(ranked(scores)[:depth]) for qid, scores in run.items()}


def cut_depth(first_stage: Mapping[str, Mapping[str, float]], reranked: Mapping[str, Mapping[str, float]],
              depth: int) -> Run:
    """The run re-ranking only the top ``depth`` of ``first_stage``, from ``reranked`` (which must hold a score for
    every one of them): the head ordered by the re-ranker, the rest in the first stage's order beneath it (so
    recall at the first stage's depth is kept). Re-ranking and cutting a finished re-ranking back to a smaller
    depth (``retrieval_lab.evaluation.depth``) both build their runs here."""
    if depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    out: dict[str, dict[str, float]] = {}
    for qid, docs in first_stage.items():
        order = [doc_id for doc_id, _ in ranked(docs)]
        scores = reranked.get(qid, {})
        head = order[:depth]
        missing = [d for d in head if d not in scores]
        if missing:
            raise ValueError(
                f"query {qid!r}: the reranked run has no score for {len(missing)} of the first stage's top {depth} "
                f"(e.g. {missing[0]!r}); it was re-ranked at a smaller depth or from another first stage"
            )
        new = {doc_id: float(scores[doc_id]) for doc_id in head}
        floor = min(new.values(), default=0.0)
        for i, doc_id in enumerate(order[depth:]):
            new[doc_id] = floor - 1.0 - i
        out[qid] = new
    return out


def write_trec_run(run: Mapping[str, Mapping[str, float]], path: str | os.PathLike, tag: str = "retrieval_lab") -> Path:
    """Write ``run`` in TREC format, atomically (a temporary file in the same folder, then ``os.replace``).

    Scores are written with ``repr`` so they read back as the same floats. Returns the path written.
    """
    path = Path(path)
    _check_token(tag, "tag")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            for qid, scores in run.items():
                qid = str(qid)
                _check_token(qid, "query id")
                for rank, (docid, score) in enumerate(ranked(scores), 1):
                    _check_token(docid, f"document id (query {qid!r})")
                    f.write(f"{qid} Q0 {docid} {rank} {score!r} {tag}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def _check_token(value: str, what: str) -> None:
    if not value or any(c.isspace() for c in value):
        raise ValueError(f"{what} {value!r} is empty or contains whitespace: it cannot be written in TREC format")
