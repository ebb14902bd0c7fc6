"""TREC-format files: topics (SGML ``<top>`` or ``qid<TAB>text``), qrels, corpora, and `load_trec`.

Corpus files (`read_corpus`) are JSONL, ``docid<TAB>text`` TSV, or TREC SGML (``<DOC><DOCNO>id</DOCNO> ...
</DOC>``, as in NPL's ``doc-text.trec`` and the TREC disks: `read_sgml_corpus`).

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
    Doc,
    combine_fingerprints,
    iter_lines,
    require_file,
)
from retrieval_lab.data.errors import CollectionError, DataWarning

__all__ = ["read_topics", "read_qrels", "load_trec", "read_corpus", "read_sgml_corpus", "CORPUS_FORMATS",
           "UNKNOWN_DOC_POLICIES", "MAX_UNKNOWN_QUERY_SHARE"]

Qrels = dict[str, dict[str, int]]
UNKNOWN_DOC_POLICIES = ("keep", "skip")
#: Default of ``dataset.max_unknown_query_share``: above this share of unknown judged queries, loading stops.
MAX_UNKNOWN_QUERY_SHARE = 0.05
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
    max_unknown_query_share: float = MAX_UNKNOWN_QUERY_SHARE,
) -> Qrels:
    """Read judgments ``{qid: {docid: grade}}`` from a TREC (4-column) or BEIR (3-column, header optional) file.

    Lines naming a query not in ``known_queries`` are skipped, with a `DataWarning` that shows examples and the
    topics' ids they likely stand for (``'01'`` for ``'1'``); when more than ``max_unknown_query_share`` of the
    judged queries are unknown, `CollectionError` instead (the metrics would be over the wrong queries).
    Lines naming a document not in ``known_docs`` are kept by default (``unknown_docs="keep"``: a pooled corpus
    such as the TREC DL top-100 subset lacks most judged documents, and nDCG/recall need their judgments) or
    dropped with ``unknown_docs="skip"``; either way a `DataWarning` gives the counts and the file.
    A file that the layout misreads stops with `CollectionError` naming the layout expected: no judged document
    in the corpus (when ``known_docs`` is given), or no judgment with a grade above 0 (e.g. the SMART/CACM
    ``qid docid 0 0`` files, read as ``qid iter docid grade``). A file with no judgments raises too.
    """
    return _read_qrels(Path(path), known_queries, known_docs, unknown_docs, None, max_unknown_query_share)


_LAYOUTS = {3: "'qid docid grade'", 4: "'qid iter docid grade'"}
_EXPECTED_LAYOUT = (
    "expected the TREC qrels layout 'qid iter docid grade' (4 columns, e.g. '1 0 doc17 1') or the BEIR layout "
    "'query-id corpus-id score' (3 columns, header optional)"
)


def _read_qrels(path: Path, known_queries, known_docs, unknown_docs: str, hasher,
                max_unknown_query_share: float = MAX_UNKNOWN_QUERY_SHARE) -> Qrels:
    if unknown_docs not in UNKNOWN_DOC_POLICIES:
        raise ValueError(f"unknown_docs must be one of {UNKNOWN_DOC_POLICIES}, got {unknown_docs!r}")
    share = max_unknown_query_share
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
        raise CollectionError(f"dataset.max_unknown_query_share must be a number in [0, 1], got {share!r}")
    require_file(path, "qrels file")
    qrels: Qrels = {}
    ncols = None
    unknown_d = repeated = 0
    unknown_q: dict[str, int] = {}  # unknown query id -> its judgments
    n_lines = 0
    first: tuple[int, str, str, str, int] | None = None  # line, text, qid, docid, grade: for messages
    docs_in_corpus = col2_in_corpus = relevant = 0
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
        if first is None:
            first = (lineno, line.strip()[:80], qid, docid, grade)
        relevant += grade > 0
        if known_docs is not None:
            docs_in_corpus += docid in known_docs
            if ncols == 4:
                col2_in_corpus += fields[1] in known_docs
        if known_queries is not None and qid not in known_queries:
            unknown_q[qid] = unknown_q.get(qid, 0) + 1
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
    _check_layout(path, ncols, n_lines, first, known_docs, docs_in_corpus, col2_in_corpus, relevant)
    n_unknown_lines = sum(unknown_q.values())
    if unknown_q:
        n_judged = len(unknown_q) + len({q for q in qrels})
        ratio = len(unknown_q) / n_judged
        detail = (f"{len(unknown_q)} of the {n_judged} judged queries ({ratio:.0%}, {n_unknown_lines} judgment(s)) "
                  f"are not in the topics: {unknown_query_examples(list(unknown_q), known_queries)}")
        if ratio > share:
            raise CollectionError(
                f"{path}: {detail}. Make the query ids of the qrels and the topics match (e.g. strip leading "
                f"zeros in one file); to evaluate on the matching queries only, raise "
                f"dataset.max_unknown_query_share (now {share:g}) above {ratio:.2f}"
            )
    if not qrels:
        raise CollectionError(f"{path}: all {n_lines} judgments name unknown queries or documents")
    if unknown_q or unknown_d or repeated:
        doc_action = "kept: metrics need them" if unknown_docs == "keep" else "skipped"
        examples = (f". Unknown queries: {unknown_query_examples(list(unknown_q), known_queries)}; metrics are "
                    f"over the other {len(qrels)} judged queries") if unknown_q else ""
        warnings.warn(
            f"{path}: {n_unknown_lines} judgment(s) name unknown queries (skipped); {unknown_d} name "
            f"documents not in the corpus ({doc_action}); {repeated} repeated identical judgment(s){examples}",
            DataWarning,
            stacklevel=3,
        )
    return qrels


def _check_layout(path: Path, ncols: int, n_lines: int, first, known_docs, docs_in_corpus: int,
                  col2_in_corpus: int, relevant: int) -> None:
    """Stop on a qrels file the layout misreads: no judged document in the corpus, or no grade above 0."""
    if known_docs is not None and docs_in_corpus == 0:
        problem = f"none of its {n_lines} judged documents is in the corpus"
    elif relevant == 0:
        problem = f"none of its {n_lines} judgments has a grade above 0 (no relevant document at all)"
    else:
        return
    lineno, text, qid, docid, grade = first
    hint = ""
    if col2_in_corpus:
        hint = (f" Its column 2 names corpus documents on {col2_in_corpus} of {n_lines} lines: this looks like the "
                "SMART/CACM layout 'qid docid 0 0' (all documents judged relevant); rewrite it as "
                "'qid 0 docid 1' (TREC) or 'qid<TAB>docid<TAB>1' (BEIR).")
    raise CollectionError(
        f"{path}: {problem}. It was read as {_LAYOUTS[ncols]} ({ncols} columns): line {lineno} {text!r} gave "
        f"query {qid!r}, document {docid!r}, grade {grade}; {_EXPECTED_LAYOUT}.{hint}"
    )


def _id_keys(qid: str) -> tuple[str, str]:
    """Two normalisations under which ids likely name the same query: lower case without leading zeros, and the
    number inside it (``'Q01'`` -> ``'1'``)."""
    low = qid.lower()
    stripped = low.lstrip("0") or "0"
    digits = "".join(c for c in low if c.isdigit())
    return stripped, (digits.lstrip("0") or "0") if digits else ""


def unknown_query_examples(unknown: list[str], known, n: int = 5) -> str:
    """``e.g. '01' (topics have '1'), '7b' (no similar id)``: the first unknown ids and their likely matches."""
    by_key: dict[str, list[str]] = {}
    if known is not None and hasattr(known, "__iter__"):
        for k in known:
            for key in set(_id_keys(str(k))):
                if key:
                    by_key.setdefault(key, []).append(str(k))
    parts = []
    for qid in unknown[:n]:
        a, b = _id_keys(qid)
        match = by_key.get(a) or (by_key.get(b) if b else None)
        parts.append(f"{qid!r} (topics have {', '.join(repr(m) for m in match[:3])})" if match
                     else f"{qid!r} (no similar id in the topics)")
    more = f" and {len(unknown) - n} more" if len(unknown) > n else ""
    return "e.g. " + ", ".join(parts) + more


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

#: What `read_corpus` reads, for error messages (a file it cannot read names these).
CORPUS_FORMATS = (
    "Corpus formats read: JSONL (one {\"id\" / \"_id\" / \"docid\": ..., \"text\" / \"contents\": ...[, "
    "\"title\": ...]} object per line; suffix .jsonl/.json or a first character '{'), TSV ('docid<TAB>text' per "
    "line; suffix .tsv/.txt, or anything else), and TREC SGML ('<DOC><DOCNO>id</DOCNO> text </DOC>', several "
    "documents per file, optional <TEXT> and <TITLE>/<HEAD>/<HEADLINE>/<HL> fields; suffix .trec/.sgml/.sgm or a "
    "first character '<')"
)
_JSONL_SUFFIXES = (".jsonl", ".json")
_TSV_SUFFIXES = (".tsv", ".txt")
_SGML_SUFFIXES = (".trec", ".sgml", ".sgm")
_COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".z", ".zip", ".zst")


def read_corpus(path: str | os.PathLike) -> Corpus:
    """A corpus from JSONL (``_id``/``id``/``docid`` + ``text``/``contents`` [+ ``title``]), TSV
    (``docid<TAB>text``) or TREC SGML (``<DOC><DOCNO>id</DOCNO> ... </DOC>``, see `read_sgml_corpus`).

    The format comes from the suffix (``.jsonl``/``.json``; ``.tsv``/``.txt``, read as SGML when the file starts
    with ``<DOC>``; ``.trec``/``.sgml``/``.sgm``), else from the first character (``{`` JSONL, ``<`` SGML, else
    TSV). A file that cannot be read stops with `CollectionError` naming the file, the line, and
    `CORPUS_FORMATS`.
    """
    path = Path(path)
    require_file(path, "corpus file")
    fmt = _corpus_format(path)
    try:
        if fmt == "jsonl":
            return Corpus.from_jsonl(path, id_keys=("_id", "id", "docid", "doc_id"), text_keys=("text", "contents"))
        if fmt == "sgml":
            return read_sgml_corpus(path)
        return Corpus.from_tsv(path)
    except CollectionError as e:
        if "duplicate document id" in str(e):  # the format was read right: the content is wrong
            raise
        compressed = (f" It looks compressed ({path.suffix}): decompress it first."
                      if path.suffix.lower() in _COMPRESSED_SUFFIXES else "")
        raise CollectionError(f"{e} (read as {_FORMAT_NAMES[fmt]}).{compressed} {CORPUS_FORMATS}") from None


_FORMAT_NAMES = {"jsonl": "JSONL", "tsv": "TSV", "sgml": "TREC SGML"}


def _corpus_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in _JSONL_SUFFIXES:
        return "jsonl"
    if suffix in _SGML_SUFFIXES:
        return "sgml"
    with open(path, "rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if suffix in _TSV_SUFFIXES:
        return "sgml" if re.match(rb"<\s*doc\s*>", head, re.IGNORECASE) else "tsv"
    if head.startswith(b"{"):
        return "jsonl"
    if head.startswith(b"<"):
        return "sgml"
    return "tsv"


_DOC_TAG = re.compile(r"<\s*(/?)\s*doc\s*>", re.IGNORECASE)
_TITLE_FIELDS = ("title", "head", "headline", "hl")
_FIELD_TAG = re.compile(r"<\s*(/?)\s*(docno|text|title|headline|head|hl|dochdr)\b[^>]*>", re.IGNORECASE)
_ANY_TAG = re.compile(r"<[^<>]*>")


def read_sgml_corpus(path: str | os.PathLike) -> Corpus:
    """A corpus from a TREC SGML file: ``<DOC> <DOCNO>id</DOCNO> ... </DOC>`` blocks, several per file.

    * the id is the ``<DOCNO>`` (exactly one per document, no whitespace inside);
    * the title joins the ``<TITLE>``, ``<HEAD>``, ``<HEADLINE>`` and ``<HL>`` fields (AP has several ``<HEAD>``);
    * the text joins the ``<TEXT>`` fields when there are any, else it is everything else in the document (NPL's
      ``doc-text.trec``: the DOCNO, then plain text); ``<DOCHDR>`` (web headers) is left out;
    * tags inside these (``<P>``) are removed, entities (``&amp;``) decoded, whitespace runs made one space.

    The file is UTF-8, or Latin-1 when it is not valid UTF-8 (old TREC files). The fingerprint is the sha256
    of its bytes. Errors name the file and line: text outside ``<DOC>``, a ``<DOC>`` never closed, a document
    without ``<DOCNO>``, a field never closed, a duplicate id (with the line of the first).
    """
    import html

    path = Path(path)
    require_file(path, "corpus file")
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    text = text.lstrip("\ufeff")
    if "\x00" in text:
        raise CollectionError(f"{path}:{text.count(chr(10), 0, text.index(chr(0))) + 1}: a NUL byte: "
                              "this is a binary file, not TREC SGML")

    cursor = [0, 1]  # position, its line: line numbers counted forward only (linear in the file)

    def line_of(pos: int) -> int:
        if pos < cursor[0]:
            return text.count("\n", 0, pos) + 1
        cursor[1] += text.count("\n", cursor[0], pos)
        cursor[0] = pos
        return cursor[1]

    def outside(start: int, end: int) -> None:
        stray = text[start:end]
        if stray.strip():
            at = start + len(stray) - len(stray.lstrip())
            raise CollectionError(f"{path}:{line_of(at)}: text outside <DOC> ... </DOC>: "
                                  f"{' '.join(stray.split())[:60]!r}")

    if not _DOC_TAG.search(text):
        raise CollectionError(f"{path}:1: no <DOC> ... </DOC> document found")
    docs: list[Doc] = []
    first_line: dict[str, int] = {}
    open_at: int | None = None
    open_line = 0
    pos = 0
    for m in _DOC_TAG.finditer(text):
        if not m.group(1):
            if open_at is not None:
                raise CollectionError(f"{path}:{line_of(m.start())}: <DOC> inside the <DOC> opened on line "
                                      f"{open_line} (a missing </DOC>)")
            outside(pos, m.start())
            open_at, open_line = m.end(), line_of(m.start())
            continue
        if open_at is None:
            raise CollectionError(f"{path}:{line_of(m.start())}: </DOC> without <DOC>")
        doc = _sgml_doc(path, text[open_at:m.start()], open_line, html.unescape)
        if doc.id in first_line:
            raise CollectionError(f"{path}:{open_line}: duplicate document id {doc.id!r} "
                                  f"(first on line {first_line[doc.id]})")
        first_line[doc.id] = open_line
        docs.append(doc)
        open_at, pos = None, m.end()
    if open_at is not None:
        raise CollectionError(f"{path}:{open_line}: <DOC> is never closed (no </DOC> after it)")
    outside(pos, len(text))
    if not docs:
        raise CollectionError(f"{path}:1: no <DOC> ... </DOC> document found")
    return Corpus(docs, fingerprint=digest, source=str(path))


def _sgml_doc(path: Path, body: str, line: int, unescape) -> Doc:
    """One ``<DOC>`` body -> `Doc` (see `read_sgml_corpus`); ``line`` is the line of its ``<DOC>``."""
    fields: dict[str, list[str]] = {}
    rest: list[str] = []  # the text outside the known fields
    open_tag: str | None = None
    open_line = start = pos = 0
    for m in _FIELD_TAG.finditer(body):
        closing, tag = bool(m.group(1)), m.group(2).lower()
        at = line + body.count("\n", 0, m.start())
        if open_tag is None:
            if closing:
                raise CollectionError(f"{path}:{at}: </{tag.upper()}> without <{tag.upper()}> "
                                      f"(document on line {line})")
            rest.append(body[pos:m.start()])
            open_tag, open_line, start = tag, at, m.end()
        elif closing and tag == open_tag:
            fields.setdefault(tag, []).append(body[start:m.start()])
            open_tag, pos = None, m.end()
        elif tag in ("docno", "text", "dochdr") or tag == open_tag:  # these never nest
            raise CollectionError(f"{path}:{at}: <{m.group(0)[1:-1].strip()}> inside the <{open_tag.upper()}> "
                                  f"opened on line {open_line} (a missing </{open_tag.upper()}>)")
        # a title tag inside <TEXT> (or the like) is part of that field's text
    if open_tag is not None:
        raise CollectionError(f"{path}:{open_line}: <{open_tag.upper()}> is never closed (document on line {line})")
    rest.append(body[pos:])

    def clean(parts: list[str]) -> str:
        return " ".join(unescape(_ANY_TAG.sub(" ", " ".join(parts))).split())

    docnos = fields.get("docno", [])
    if not docnos:
        raise CollectionError(f"{path}:{line}: document has no <DOCNO>id</DOCNO>")
    if len(docnos) > 1:
        raise CollectionError(f"{path}:{line}: document has {len(docnos)} <DOCNO> fields")
    doc_id = clean(docnos)
    if not doc_id or any(c.isspace() for c in doc_id):
        raise CollectionError(f"{path}:{line}: document id {doc_id!r} is empty or contains whitespace")
    title = clean([t for f in _TITLE_FIELDS for t in fields.get(f, [])])
    doc_text = clean(fields["text"]) if "text" in fields else clean(rest)
    return Doc(id=doc_id, text=doc_text, title=title)


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
    max_unknown_query_share: float = MAX_UNKNOWN_QUERY_SHARE,
) -> Collection:
    """Build a `Collection` from TREC files.

    ``qrels_path`` is one file (judgments for ``split``) or a mapping ``split -> file``. Judgments naming
    queries absent from the topics file are skipped with a warning, or stop loading when more than
    ``max_unknown_query_share`` of the judged queries are (see `read_qrels`, also for documents).
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
        qrels[split_name] = _read_qrels(Path(qpath), topics, corpus, unknown_docs, hasher, max_unknown_query_share)
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
