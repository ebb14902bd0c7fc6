"""Collections through the `ir_datasets` package (imported lazily: it is slow to import and optional at run time).

``load_ir_datasets("beir/scifact/test")`` or, for several splits sharing one corpus,
``load_ir_datasets(splits={"train": "beir/scifact/train", "test": "beir/scifact/test"})``.
ir_datasets downloads a dataset on first use into ``~/.ir_datasets`` (or ``$IR_DATASETS_HOME``); where
there is no network, failures are reported as `CollectionError` with a hint to use a local BEIR copy.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from retrieval_lab.data.collection import Collection, Corpus, Doc, combine_fingerprints
from retrieval_lab.data.errors import DATA_HINT, CollectionError, DataWarning
from retrieval_lab.data.trec import UNKNOWN_DOC_POLICIES

__all__ = ["load_ir_datasets", "collection_from_records", "guess_split"]

_KNOWN_SPLITS = ("train", "dev", "validation", "val", "test")


def guess_split(dataset_id: str) -> str:
    """The split name for a single ir_datasets id: its last path component if that names a split, else "test"."""
    last = dataset_id.rstrip("/").rsplit("/", 1)[-1].lower()
    return last if last in _KNOWN_SPLITS else "test"


def load_ir_datasets(
    dataset_id: str | None = None,
    *,
    splits: Mapping[str, str] | None = None,
    split: str | None = None,
    name: str | None = None,
    rel_threshold: int = 1,
    unknown_docs: str = "keep",
) -> Collection:
    """Load a collection through ir_datasets.

    Either one ``dataset_id`` (its qrels become split ``split``, default `guess_split`) or ``splits``
    mapping split names to ids; documents come from ``dataset_id`` when given, else from the first split's
    dataset (the splits of one collection share a corpus). Queries of all splits are merged.
    """
    if splits:
        ids = {str(s): str(i) for s, i in splits.items()}
    elif dataset_id:
        ids = {split or guess_split(dataset_id): dataset_id}
    else:
        raise CollectionError("load_ir_datasets needs a dataset_id or a splits mapping (split -> ir_datasets id)")

    datasets = {s: _load(i) for s, i in ids.items()}
    docs_id = dataset_id if dataset_id else next(iter(ids.values()))
    docs_ds = _load(docs_id)
    if not docs_ds.has_docs():
        raise CollectionError(f"ir_datasets id {docs_id!r} has no documents")
    for s, ds in datasets.items():
        if not ds.has_queries() or not ds.has_qrels():
            raise CollectionError(
                f"ir_datasets id {ids[s]!r} (split {s!r}) has no queries or no qrels; use a split-specific id "
                f"such as 'beir/scifact/test'"
            )
    return collection_from_records(
        name=name or docs_id,
        docs=_guarded(docs_ds.docs_iter, docs_id),
        queries={s: _guarded(ds.queries_iter, ids[s]) for s, ds in datasets.items()},
        qrels={s: _guarded(ds.qrels_iter, ids[s]) for s, ds in datasets.items()},
        sources={"docs": docs_id, **{f"split:{s}": i for s, i in ids.items()}},
        rel_threshold=rel_threshold,
        unknown_docs=unknown_docs,
    )


def collection_from_records(
    name: str,
    docs: Iterable[Any],
    queries: Mapping[str, Iterable[Any]],
    qrels: Mapping[str, Iterable[Any]],
    sources: Mapping[str, str] | None = None,
    rel_threshold: int = 1,
    unknown_docs: str = "keep",
) -> Collection:
    """Map ir_datasets records (namedtuples) to a `Collection`.

    docs: ``doc_id`` + ``text`` (+ ``title`` when present; without ``text``, ``default_text()``);
    queries: ``query_id`` + ``text`` (else ``title``, else ``default_text()``), merged over splits;
    qrels: ``query_id, doc_id, relevance`` per split. The fingerprint hashes the mapped content.
    """
    if unknown_docs not in UNKNOWN_DOC_POLICIES:
        raise ValueError(f"unknown_docs must be one of {UNKNOWN_DOC_POLICIES}, got {unknown_docs!r}")
    sources = dict(sources or {})
    doc_source = sources.get("docs", name)

    doc_hash = hashlib.sha256()

    def mapped_docs() -> Iterator[Doc]:
        for record in docs:
            doc = Doc(id=str(record.doc_id), text=_field(record, "text"), title=_optional(record, "title"))
            doc_hash.update(json.dumps([doc.id, doc.title, doc.text], ensure_ascii=False).encode("utf-8") + b"\n")
            yield doc

    corpus = Corpus(mapped_docs(), fingerprint="", source=f"ir_datasets:{doc_source}")
    corpus.fingerprint = doc_hash.hexdigest()

    all_queries: dict[str, str] = {}
    query_hashes: dict[str, str] = {}
    for split, records in queries.items():
        source = sources.get(f"split:{split}", split)
        h = hashlib.sha256()
        seen: set[str] = set()
        for record in records:
            qid = str(record.query_id)
            text = _query_text(record)
            h.update(json.dumps([qid, text], ensure_ascii=False).encode("utf-8") + b"\n")
            if qid in seen:
                raise CollectionError(f"ir_datasets:{source}: duplicate query id {qid!r}")
            seen.add(qid)
            if qid in all_queries and all_queries[qid] != text:
                raise CollectionError(
                    f"ir_datasets:{source}: query {qid!r} has a different text than in another split"
                )
            all_queries[qid] = text
        query_hashes[split] = h.hexdigest()

    all_qrels: dict[str, dict[str, dict[str, int]]] = {}
    qrel_hashes: dict[str, str] = {}
    for split, records in qrels.items():
        source = sources.get(f"split:{split}", split)
        h = hashlib.sha256()
        judged: dict[str, dict[str, int]] = {}
        n = unknown_q = unknown_d = 0
        for record in records:
            qid, docid, grade = str(record.query_id), str(record.doc_id), int(record.relevance)
            h.update(json.dumps([qid, docid, grade]).encode("utf-8") + b"\n")
            n += 1
            if qid not in all_queries:
                unknown_q += 1
                continue
            if docid not in corpus:
                unknown_d += 1
                if unknown_docs == "skip":
                    continue
            row = judged.setdefault(qid, {})
            if row.get(docid, grade) != grade:
                raise CollectionError(
                    f"ir_datasets:{source}: query {qid!r} judges document {docid!r} twice with different grades"
                )
            row[docid] = grade
        if n == 0:
            raise CollectionError(f"ir_datasets:{source}: no judgments (empty split {split!r})")
        if not judged:
            raise CollectionError(f"ir_datasets:{source}: all {n} judgments name unknown queries or documents")
        if unknown_q or unknown_d:
            action = "kept: metrics need them" if unknown_docs == "keep" else "skipped"
            warnings.warn(
                f"ir_datasets:{source}: {unknown_q} judgment(s) name unknown queries (skipped); {unknown_d} name "
                f"documents not in the corpus ({action})",
                DataWarning,
                stacklevel=2,
            )
        all_qrels[split] = judged
        qrel_hashes[split] = h.hexdigest()

    fp = combine_fingerprints({
        "loader": "ir_datasets",
        "sources": sources,
        "corpus": corpus.fingerprint,
        "queries": query_hashes,
        "qrels": qrel_hashes,
        "unknown_docs": unknown_docs,
    })
    return Collection(name=name, corpus=corpus, queries=all_queries, qrels=all_qrels,
                      rel_threshold=rel_threshold, runs={}, fingerprint=fp)


# -- ir_datasets access --------------------------------------------------------------------------------------


def _ir_datasets():
    try:
        import ir_datasets
    except ImportError as e:  # pragma: no cover - it is a declared dependency
        raise CollectionError("the ir_datasets loader needs the `ir_datasets` package (pip install ir_datasets)") from e
    return ir_datasets


def _load(dataset_id: str):
    irds = _ir_datasets()
    try:
        return irds.load(dataset_id)
    except KeyError:
        close = difflib.get_close_matches(dataset_id, list(irds.registry), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise CollectionError(f"unknown ir_datasets id {dataset_id!r}.{hint} See https://ir-datasets.com") from None


def _guarded(make_records: Callable[[], Iterable[Any]], dataset_id: str) -> Iterator[Any]:
    """Iterate ``make_records()`` lazily, re-raising ir_datasets' own failures (typically a download with no
    network, raised either when the iterator is made or while it runs) as `CollectionError`."""
    try:
        iterator = iter(make_records())
        while True:
            try:
                record = next(iterator)
            except StopIteration:
                return
            yield record
    except CollectionError:
        raise
    except Exception as e:
        raise CollectionError(
            f"ir_datasets could not provide {dataset_id!r} ({type(e).__name__}: {e}). It downloads data on "
            f"first use; without network access use a local BEIR-layout copy instead. {DATA_HINT}"
        ) from e


def _field(record: Any, name: str) -> str:
    value = getattr(record, name, None)
    if value is None:
        default_text = getattr(record, "default_text", None)
        if callable(default_text):
            return str(default_text())
        raise CollectionError(f"ir_datasets record {type(record).__name__} has no {name!r} field")
    return value if isinstance(value, str) else str(value)


def _optional(record: Any, name: str) -> str:
    value = getattr(record, name, None)
    return "" if value is None else str(value)


def _query_text(record: Any) -> str:
    for name in ("text", "title"):
        value = getattr(record, name, None)
        if isinstance(value, str):
            return value
    return _field(record, "text")
