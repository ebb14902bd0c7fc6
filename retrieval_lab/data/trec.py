"""TREC-format files: topics (SGML ``<top>`` or ``qid<TAB>text``), qrels, and `load_trec`.

Qrels readers accept the TREC 4-column format (``qid iter docid grade``), the BEIR 3-column TSV with its
``query-id corpus-id score`` header, and a headerless 3-column file; columns may be separated by tabs or
spaces.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from collections.abc import Container, Mapping
from pathlib import Path

from retrieval_lab.data.collection import (
    Collection,
    Corpus,
    combine_fingerprints,
    iter_lines,
    require_file,
)
from retrieval_lab.data.errors import CollectionError, DataWarning

__all__ = ["read_topics", "read_qrels", "load_trec", "read_corpus", "UNKNOWN_DOC_POLICIES"]

Qrels = dict[str, dict[str, int]]
UNKNOWN_DOC_POLICIES = ("keep", "skip")
_SGML_FIELDS = ("num", "title", "desc", "narr")
_SGML_PREFIX = {"num": "Number:", "title": "Topic:", "desc": "Description:", "narr": "Narrative:"}
_SGML_TAG = re.compile(r"<\s*(/?)\s*(top|num|title|desc|narr)\s*>", re.IGNORECASE)


# -- topics ---------------------------------------------------------------------------------------------------


def read_topics(path: str | os.PathLike, field: str = "title") -> dict[str, str]:
    """Read a topics file: classic TREC SGML (``<top><num>..<title>..<desc>..<narr>..</top>``) or ``qid<TAB>text``.

    ``field`` picks the SGML field(s) used as the query text: ``"title"``, ``"desc"``, ``"narr"``, or a
    ``+``-joined combination such as ``"title+desc"`` (ignored for the tab-separated format).
    """
    topics, _ = _read_topics(Path(path), field)
    return topics


def _read_topics(path: Path, field: str) -> tuple[dict[str, str], str]:
    require_file(path, "topics file")
    raw = path.read_bytes()  # topic files are small
    digest = hashlib.sha256(raw).hexdigest()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # old TREC topic files are not always UTF-8
    text = text.lstrip("\ufeff")
    if re.search(r"<\s*top\s*>", text, re.IGNORECASE):
        topics = _parse_sgml_topics(path, text, field)
    else:
        topics = _parse_tsv_topics(path)
    if not topics:
        raise CollectionError(f"{path}: no topics found")
    return topics, digest


def _parse_tsv_topics(path: Path) -> dict[str, str]:
    topics: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        qid, sep, query = line.partition("\t")
        qid = qid.strip()
        if not sep or not qid or any(c.isspace() for c in qid):
            raise CollectionError(f"{path}:{lineno}: expected 'qid<TAB>text', got {line[:80]!r}")
        if qid in topics:
            raise CollectionError(f"{path}:{lineno}: duplicate query id {qid!r} (first on line {first_line[qid]})")
        topics[qid] = query.strip()
        first_line[qid] = lineno
    return topics


def _parse_sgml_topics(path: Path, text: str, field: str) -> dict[str, str]:
    wanted = [f.strip().lower() for f in field.split("+")]
    for f in wanted:
        if f not in _SGML_FIELDS[1:]:
            raise ValueError(f"topic field {f!r} is not one of title, desc, narr")
    topics: dict[str, str] = {}
    first_line: dict[str, int] = {}
    current: dict[str, str] | None = None
    open_field: str | None = None
    start = 0
    top_line = 0

    def line_of(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    def close_field(end: int) -> None:
        nonlocal open_field
        if current is not None and open_field is not None:
            value = " ".join(text[start:end].split())
            prefix = _SGML_PREFIX[open_field]
            if value.lower().startswith(prefix.lower()):
                value = value[len(prefix):].strip()
            current[open_field] = value
        open_field = None

    for m in _SGML_TAG.finditer(text):
        closing, tag = m.group(1), m.group(2).lower()
        close_field(m.start())
        if tag == "top":
            if not closing:
                current, top_line = {}, line_of(m.start())
                continue
            if current is None:
                raise CollectionError(f"{path}:{line_of(m.start())}: </top> without <top>")
            qid = current.get("num", "")
            if not qid or any(c.isspace() for c in qid):
                raise CollectionError(f"{path}:{top_line}: topic has no usable <num> ({qid!r})")
            if qid in topics:
                raise CollectionError(
                    f"{path}:{top_line}: duplicate query id {qid!r} (first on line {first_line[qid]})"
                )
            missing = [f for f in wanted if not current.get(f)]
            if missing:
                raise CollectionError(f"{path}:{top_line}: topic {qid!r} has no <{missing[0]}> text")
            topics[qid] = " ".join(current[f] for f in wanted)
            first_line[qid] = top_line
            current = None
        elif not closing:
            if current is None:
                raise CollectionError(f"{path}:{line_of(m.start())}: <{tag}> outside <top>")
            open_field, start = tag, m.end()
    if current is not None:
        raise CollectionError(f"{path}:{top_line}: <top> is never closed")
    return topics


# -- qrels ----------------------------------------------------------------------------------------------------


def read_qrels(
    path: str | os.PathLike,
    known_queries: Container[str] | None = None,
    known_docs: Container[str] | None = None,
    unknown_docs: str = "keep",
) -> Qrels:
    """Read judgments ``{qid: {docid: grade}}`` from a TREC (4-column) or BEIR (3-column, header optional) file.

    Lines naming a query not in ``known_queries`` are skipped. Lines naming a document not in
    ``known_docs`` are kept by default (``unknown_docs="keep"``: a pooled corpus such as the TREC DL top-100
    subset lacks most judged documents, and nDCG/recall need their judgments) or dropped with
    ``unknown_docs="skip"``. Either way one `DataWarning` gives the counts and the file.
    A file with no judgments raises `CollectionError`.
    """
    return _read_qrels(Path(path), known_queries, known_docs, unknown_docs, None)


def _read_qrels(path: Path, known_queries, known_docs, unknown_docs: str, hasher) -> Qrels:
    if unknown_docs not in UNKNOWN_DOC_POLICIES:
        raise ValueError(f"unknown_docs must be one of {UNKNOWN_DOC_POLICIES}, got {unknown_docs!r}")
    require_file(path, "qrels file")
    qrels: Qrels = {}
    ncols = None
    unknown_q = unknown_d = repeated = 0
    n_lines = 0
    for lineno, line in iter_lines(path, hasher):
        fields = line.split()
        if not fields:
            continue
        if ncols is None:
            if len(fields) not in (3, 4):
                raise CollectionError(
                    f"{path}:{lineno}: expected 'qid docid grade' or 'qid iter docid grade', got {line[:80]!r}"
                )
            if _grade(fields[-1]) is None:  # a header such as "query-id corpus-id score"
                ncols = len(fields)
                continue
            ncols = len(fields)
        if len(fields) != ncols:
            raise CollectionError(f"{path}:{lineno}: expected {ncols} columns, got {len(fields)}: {line[:80]!r}")
        qid, docid = (fields[0], fields[1]) if ncols == 3 else (fields[0], fields[2])
        grade = _grade(fields[-1])
        if grade is None:
            raise CollectionError(f"{path}:{lineno}: relevance grade must be an integer, got {fields[-1]!r}")
        n_lines += 1
        if known_queries is not None and qid not in known_queries:
            unknown_q += 1
            continue
        if known_docs is not None and docid not in known_docs:
            unknown_d += 1
            if unknown_docs == "skip":
                continue
        judged = qrels.setdefault(qid, {})
        if docid in judged:
            if judged[docid] != grade:
                raise CollectionError(
                    f"{path}:{lineno}: query {qid!r} judges document {docid!r} twice with different grades "
                    f"({judged[docid]} and {grade})"
                )
            repeated += 1
        judged[docid] = grade
    if n_lines == 0:
        raise CollectionError(f"{path}: no judgments (empty split: the file is empty or holds only a header)")
    if not qrels:
        raise CollectionError(f"{path}: all {n_lines} judgments name unknown queries or documents")
    if unknown_q or unknown_d or repeated:
        doc_action = "kept: metrics need them" if unknown_docs == "keep" else "skipped"
        warnings.warn(
            f"{path}: {unknown_q} judgment(s) name unknown queries (skipped); {unknown_d} name documents not in "
            f"the corpus ({doc_action}); {repeated} repeated identical judgment(s)",
            DataWarning,
            stacklevel=3,
        )
    return qrels


def _grade(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        pass
    try:
        f = float(value)
    except ValueError:
        return None
    return int(f) if f.is_integer() else None


# -- corpus and the TREC loader ----------------------------------------------------------------------------


def read_corpus(path: str | os.PathLike) -> Corpus:
    """A corpus from JSONL (``_id``/``id``/``docid`` + ``text``/``contents`` [+ ``title``]) or TSV (``docid<TAB>text``)."""
    path = Path(path)
    require_file(path, "corpus file")
    if _looks_like_jsonl(path):
        return Corpus.from_jsonl(path, id_keys=("_id", "id", "docid", "doc_id"), text_keys=("text", "contents"))
    return Corpus.from_tsv(path)


def _looks_like_jsonl(path: Path) -> bool:
    if path.suffix.lower() in (".jsonl", ".json"):
        return True
    if path.suffix.lower() in (".tsv", ".txt"):
        return False
    with open(path, "rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"{")


def load_trec(
    corpus_path: str | os.PathLike,
    topics_path: str | os.PathLike,
    qrels_path: str | os.PathLike | Mapping[str, str | os.PathLike],
    name: str | None = None,
    split: str = "test",
    rel_threshold: int = 1,
    topic_field: str = "title",
    runs: Mapping[str, str | os.PathLike] | None = None,
    unknown_docs: str = "keep",
) -> Collection:
    """Build a `Collection` from TREC files.

    ``qrels_path`` is one file (judgments for ``split``) or a mapping ``split -> file``. Judgments naming
    queries absent from the topics file are skipped with a warning (see `read_qrels` for documents).
    ``runs`` maps names to TREC run files to register in ``Collection.runs``.
    """
    corpus = read_corpus(corpus_path)
    topics, topics_digest = _read_topics(Path(topics_path), topic_field)
    qrels_files = dict(qrels_path) if isinstance(qrels_path, Mapping) else {split: qrels_path}
    if not qrels_files:
        raise CollectionError("load_trec: no qrels files given")
    qrels: dict[str, Qrels] = {}
    digests: dict[str, str] = {}
    for split_name, qpath in qrels_files.items():
        hasher = hashlib.sha256()
        qrels[split_name] = _read_qrels(Path(qpath), topics, corpus, unknown_docs, hasher)
        digests[split_name] = hasher.hexdigest()
    run_paths, run_digests = _register_runs(runs or {})
    fp = combine_fingerprints({
        "loader": "trec",
        "corpus": corpus.fingerprint,
        "topics": topics_digest,
        "topic_field": topic_field,
        "qrels": digests,
        "unknown_docs": unknown_docs,
        "runs": run_digests,
    })
    return Collection(
        name=name or Path(corpus_path).parent.name or Path(corpus_path).stem,
        corpus=corpus,
        queries=topics,
        qrels=qrels,
        rel_threshold=rel_threshold,
        runs=run_paths,
        fingerprint=fp,
    )


def _register_runs(runs: Mapping[str, str | os.PathLike]) -> tuple[dict[str, str], dict[str, str]]:
    from retrieval_lab.cache import file_digest

    paths, digests = {}, {}
    for run_name, run_path in runs.items():
        run_path = Path(run_path)
        require_file(run_path, "run file")
        paths[run_name] = str(run_path)
        digests[run_name] = file_digest(run_path)
    return paths, digests
