"""The data types every stage shares: `Doc`, `Corpus` (in memory, loaded once) and `Collection`.

See docs/ARCHITECTURE.md, "Data contracts". The loaders live next to this module (`beir.py`, `trec.py`,
`irds.py`); the line-level helpers they share (streaming a file while hashing its bytes, reporting skipped
lines) are here so that every reader reports errors the same way: file, line number, offending id.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from retrieval_lab.data.errors import DATA_HINT, CollectionError, DataWarning

__all__ = ["Doc", "Corpus", "Collection"]


@dataclass(frozen=True, slots=True)
class Doc:
    id: str
    text: str
    title: str = ""

    def contents(self) -> str:
        """What models and BM25 index: ``"title text"``; the title is omitted when empty."""
        if self.title and self.text:
            return f"{self.title} {self.text}"
        return self.title or self.text


class Corpus:
    """All documents of a collection, in memory, in file order: a list of ids and a dict id -> `Doc`.

    ``fingerprint`` identifies the content (used in cache keys). Loaders pass the sha256 of the file bytes
    they read; a corpus built from an iterable of `Doc` hashes the documents themselves.
    """

    __slots__ = ("_ids", "_docs", "fingerprint", "source", "_empty")

    def __init__(self, docs: Iterable[Doc], fingerprint: str | None = None, source: str | None = None):
        hasher = hashlib.sha256() if fingerprint is None else None
        ids: list[str] = []
        table: dict[str, Doc] = {}
        empty: list[str] = []
        for doc in docs:
            if not isinstance(doc, Doc):
                raise TypeError(f"Corpus takes Doc objects, got {type(doc).__name__}")
            if doc.id in table:
                where = f" in {source}" if source else ""
                raise CollectionError(f"duplicate document id {doc.id!r}{where}")
            table[doc.id] = doc
            ids.append(doc.id)
            if not (doc.text.strip() or doc.title.strip()):
                empty.append(doc.id)
            if hasher is not None:
                hasher.update(json.dumps([doc.id, doc.title, doc.text], ensure_ascii=False).encode("utf-8"))
                hasher.update(b"\n")
        self._ids = ids
        self._docs = table
        self._empty = empty
        self.fingerprint: str = fingerprint if fingerprint is not None else hasher.hexdigest()
        self.source = source

    # -- loading -------------------------------------------------------------------------------------------
    @classmethod
    def from_jsonl(
        cls,
        path: str | Path,
        id_keys: tuple[str, ...] = ("_id",),
        text_keys: tuple[str, ...] = ("text",),
    ) -> Corpus:
        """Stream a JSONL corpus (BEIR: ``{"_id", "title", "text"}`` per line), hashing the bytes read.

        ``id_keys``/``text_keys`` are tried in order (e.g. ``("_id", "id", "docid")`` and ``("text", "contents")``
        to also accept Pyserini-style files). Errors name the file and line.
        """

        def parse(path: Path, lineno: int, line: str) -> Doc:
            record = parse_json_line(path, lineno, line)
            doc_id = _first_key(record, id_keys)
            if doc_id is None:
                raise CollectionError(f"{path}:{lineno}: document has no {' / '.join(id_keys)} field")
            doc_id = _as_id(doc_id, path, lineno)
            text = _first_key(record, text_keys)
            if text is None:
                raise CollectionError(f"{path}:{lineno}: document {doc_id!r} has no {' / '.join(text_keys)} field")
            return Doc(id=doc_id, text=_as_text(text), title=_as_text(record.get("title")))

        return cls._stream(Path(path), parse)

    @classmethod
    def from_tsv(cls, path: str | Path) -> Corpus:
        """Stream a ``docid<TAB>text`` corpus (MS MARCO collection.tsv style; the text may hold further tabs)."""

        def parse(path: Path, lineno: int, line: str) -> Doc:
            doc_id, sep, text = line.partition("\t")
            doc_id = doc_id.strip()
            if not sep or not doc_id:
                raise CollectionError(f"{path}:{lineno}: expected 'docid<TAB>text', got {line[:80]!r}")
            return Doc(id=doc_id, text=text.strip())

        return cls._stream(Path(path), parse)

    @classmethod
    def _stream(cls, path: Path, parse: Callable[[Path, int, str], Doc]) -> Corpus:
        """A corpus read lazily from ``path``, one document per non-blank line (``parse``), with the file's
        sha256 as fingerprint; a duplicate id names both lines."""
        require_file(path, "corpus file")
        hasher = hashlib.sha256()
        seen: dict[str, int] = {}

        def docs() -> Iterator[Doc]:
            for lineno, line in iter_lines(path, hasher):
                if not line.strip():
                    continue
                doc = parse(path, lineno, line)
                if doc.id in seen:
                    raise CollectionError(
                        f"{path}:{lineno}: duplicate document id {doc.id!r} (first on line {seen[doc.id]})"
                    )
                seen[doc.id] = lineno
                yield doc

        corpus = cls(docs(), fingerprint="", source=str(path))
        corpus.fingerprint = hasher.hexdigest()
        return corpus

    # -- access --------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[Doc]:
        docs = self._docs
        return (docs[i] for i in self._ids)

    def __getitem__(self, doc_id: str) -> Doc:
        try:
            return self._docs[doc_id]
        except KeyError:
            where = f" ({self.source})" if self.source else ""
            raise KeyError(f"document id {doc_id!r} is not in the corpus{where}") from None

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._docs

    def get(self, doc_id: str, default: Doc | None = None) -> Doc | None:
        return self._docs.get(doc_id, default)

    def ids(self) -> list[str]:
        """Document ids in file order (a copy)."""
        return list(self._ids)

    def empty_ids(self) -> list[str]:
        """Ids of the documents with neither title nor text (blank), in file order."""
        return list(self._empty)

    def __repr__(self) -> str:
        src = f", source={self.source!r}" if self.source else ""
        return f"Corpus({len(self)} docs, fingerprint={self.fingerprint[:16]!r}{src})"


@dataclass(repr=False)
class Collection:
    """Documents, queries, and relevance judgments per split.

    ``qrels[split][qid][docid] = grade``. Every judged query has a text in ``queries``; a judged document may
    be missing from the corpus when the corpus is a pool (e.g. the TREC DL 2019 top-100 subset): those
    judgments are kept because metrics (nDCG's ideal ranking, recall) need them. Check ``docid in corpus``
    before looking a judged document up.

    A judged query whose text is blank is left out of `topics` (no retriever ranks it: it gets an empty run
    and scores 0 on every metric, as a judged query missing from a run does); loading warns naming such
    queries, and blank documents. ``default_run`` names the bundled run (a key of ``runs``) that
    ``retriever=run`` uses when ``dataset.default_run`` is not set (a folder's ``collection.yaml``).
    """

    name: str
    corpus: Corpus
    queries: dict[str, str]
    qrels: dict[str, dict[str, dict[str, int]]]
    rel_threshold: int = 1
    runs: dict[str, str] = field(default_factory=dict)
    fingerprint: str = ""
    default_run: str | None = None

    def __post_init__(self) -> None:
        for split, judged in self.qrels.items():
            missing = [qid for qid in judged if qid not in self.queries]
            if missing:
                raise CollectionError(
                    f"collection {self.name!r}, split {split!r}: {len(missing)} judged queries have no text "
                    f"(e.g. {missing[:3]})"
                )
        if self.default_run is not None and self.default_run not in self.runs:
            raise CollectionError(
                f"collection {self.name!r}: default run {self.default_run!r} is not one of its runs "
                f"({sorted(self.runs)})"
            )
        if not self.fingerprint:
            self.fingerprint = _content_fingerprint(self)
        self._warn_blank()

    def _warn_blank(self) -> None:
        """One `DataWarning` naming the blank documents, one naming the judged queries with a blank text."""
        where = f" ({self.corpus.source})" if getattr(self.corpus, "source", None) else ""
        empty_docs = self.corpus.empty_ids() if hasattr(self.corpus, "empty_ids") else []
        if empty_docs:
            warnings.warn(
                f"collection {self.name!r}: {len(empty_docs)} document(s) have no text and no title{where}: "
                f"{_examples(empty_docs)}; they are indexed as empty (a retriever ranks them last or by chance); "
                "fix or drop them in the corpus file",
                DataWarning,
                stacklevel=4,
            )
        for split, judged in self.qrels.items():
            blank = [qid for qid in judged if not self.queries[qid].strip()]
            if blank:
                warnings.warn(
                    f"collection {self.name!r}, split {split!r}: {len(blank)} judged query(ies) have an empty text: "
                    f"{_examples(blank)}; they are not retrieved for (an empty run), so they score 0 on every metric "
                    "and count in the means; give them a text in the queries/topics file",
                    DataWarning,
                    stacklevel=4,
                )

    @property
    def splits(self) -> list[str]:
        """The splits that have judgments, in load order."""
        return list(self.qrels)

    def topics(self, split: str) -> dict[str, str]:
        """qid -> text for the queries judged in ``split`` (in qrels order), except those with a blank text (see
        `empty_queries`): retrievers rank only these, so a blank query gets no (arbitrary) ranking."""
        if split not in self.qrels:
            raise KeyError(f"collection {self.name!r} has no split {split!r}; splits: {self.splits}")
        queries = self.queries
        return {qid: queries[qid] for qid in self.qrels[split] if queries[qid].strip()}

    def empty_queries(self, split: str) -> list[str]:
        """Judged queries of ``split`` whose text is blank (left out of `topics`; they score 0)."""
        if split not in self.qrels:
            raise KeyError(f"collection {self.name!r} has no split {split!r}; splits: {self.splits}")
        return [qid for qid in self.qrels[split] if not self.queries[qid].strip()]

    def __repr__(self) -> str:
        splits = ", ".join(f"{s}: {len(q)} queries" for s, q in self.qrels.items())
        return (
            f"Collection({self.name!r}, {len(self.corpus)} docs, {len(self.queries)} queries, "
            f"qrels {{{splits}}}, rel_threshold={self.rel_threshold}, runs={sorted(self.runs)}, "
            f"fingerprint={self.fingerprint[:16]!r})"
        )


def _content_fingerprint(collection: Collection) -> str:
    """Fingerprint of a collection built in memory (loaders pass one computed from the files they read)."""
    from retrieval_lab.cache import file_digest

    payload = {
        "corpus": collection.corpus.fingerprint,
        "queries": sorted(collection.queries.items()),
        "qrels": {s: sorted((q, sorted(d.items())) for q, d in j.items()) for s, j in collection.qrels.items()},
        "runs": {n: file_digest(p) if Path(p).is_file() else str(p) for n, p in sorted(collection.runs.items())},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


# -- helpers shared by the readers (beir.py, trec.py, runs.py) -----------------------------------------------


def require_file(path: Path, what: str) -> None:
    """Raise `CollectionError` naming ``path`` (and how to point at the data) when it is not a file."""
    if not path.is_file():
        kind = "is a directory, not a file" if path.is_dir() else "not found"
        raise CollectionError(f"{what} {kind}: {path}. {DATA_HINT}")


def iter_lines(path: Path, hasher=None) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` (1-based, without the line break), feeding the raw bytes to ``hasher``."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if hasher is not None:
                hasher.update(raw)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise CollectionError(f"{path}:{lineno}: not valid UTF-8 ({e.reason})") from None
            if lineno == 1 and line.startswith("\ufeff"):
                line = line[1:]
            yield lineno, line.rstrip("\r\n")


def parse_json_line(path: Path, lineno: int, line: str) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise CollectionError(f"{path}:{lineno}: malformed JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(record, dict):
        raise CollectionError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
    return record


def warn_skipped(path: Path | str, what: str, unknown_queries: int, unknown_docs: int, skipped: int) -> None:
    """One warning line with the counts of lines that name unknown queries/documents."""
    warnings.warn(
        f"{path}: skipped {skipped} {what} line(s) naming unknown ids "
        f"({unknown_queries} with an unknown query, {unknown_docs} with an unknown document)",
        DataWarning,
        stacklevel=3,
    )


def _examples(ids, n: int = 10) -> str:
    """``'a', 'b', ... (and 12 more)``: the first ``n`` ids of a list, for messages."""
    ids = list(ids)
    shown = ", ".join(repr(i) for i in ids[:n])
    return shown + (f" (and {len(ids) - n} more)" if len(ids) > n else "")


def _first_key(record: Mapping, keys: tuple[str, ...]):
    for key in keys:
        if key in record:
            return record[key]
    return None


def _as_id(value, path: Path, lineno: int) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise CollectionError(f"{path}:{lineno}: id must be a string or integer, got {value!r}")
    value = str(value).strip()
    if not value or any(c.isspace() for c in value):
        raise CollectionError(f"{path}:{lineno}: id {value!r} is empty or contains whitespace")
    return value


def _as_text(value) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def combine_fingerprints(parts: Mapping[str, object]) -> str:
    """sha256 hex of a JSON mapping of file digests and options (how loaders build `Collection.fingerprint`)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()
