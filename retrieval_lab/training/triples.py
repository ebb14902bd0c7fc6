"""Training triples (query, positive, negative) from an ir_datasets dataset with docpairs, e.g. MS MARCO's
``msmarco-passage/train/triples-small`` (39.8M triples over 8.8M passages).

The corpus never enters our in-memory :class:`~retrieval_lab.data.collection.Corpus`:

- the first ``max_triples`` docpairs are streamed once into a list of ``(qid, positive id, negative id)``
  (ids only, interned: a qid or doc id repeated across triples is stored once);
- query texts come from one pass over ``queries_iter()``, keeping only the qids the triples name;
- document texts are read per item through ``docs_store().get(doc_id)`` (ir_datasets' on-disk store; for MS
  MARCO it is built once, on first use, next to the downloaded collection).

ir_datasets downloads a dataset the first time it is used (so the first run needs the network) and caches it
under ``$IR_DATASETS_HOME`` (default ``~/.ir_datasets``); later runs read the cache, offline.

:class:`IrDatasetsTriples` gives reranker lists (:class:`~retrieval_lab.training.data.ListItem`: positive then
negative, labels ``[1.0, 0.0]``); :meth:`IrDatasetsTriples.pairs` gives a view with retriever pairs
(:class:`~retrieval_lab.training.data.PairItem`: the positive, the triple's negative as the hard negative;
``positive_ids``: the query's positives among the triples read).
Items are fixed (the triples are the sampling): shuffling is the DataLoader's.
"""

from __future__ import annotations

import itertools
import os
import sys
from typing import Any

import torch

from retrieval_lab.data.errors import CollectionError
from retrieval_lab.training.data import ListItem, PairItem

__all__ = ["IrDatasetsTriples", "TriplePairs", "docpair_ids"]

#: Shown when a dataset has no docpairs (the full list comes from ir_datasets' registry, same family first).
EXAMPLE_TRIPLES = ("msmarco-passage/train/triples-small", "msmarco-passage/train/triples-v2",
                   "tripclick/train/hofstaetter-triples")


def _ir_datasets():
    import ir_datasets  # slow to import: only when triples are asked for

    return ir_datasets


def _cache_home() -> str:
    try:
        return str(_ir_datasets().util.home_path())
    except Exception:  # pragma: no cover - older/newer ir_datasets
        return os.environ.get("IR_DATASETS_HOME", "~/.ir_datasets")


def _unavailable(dataset_id: str, what: str, error: Exception) -> CollectionError:
    return CollectionError(
        f"ir_datasets could not provide the {what} of {dataset_id!r} ({type(error).__name__}: {error}). "
        f"ir_datasets downloads a dataset the first time it is used, which needs network access; afterwards it "
        f"reads its cache in {_cache_home()} (set IR_DATASETS_HOME to use another folder, e.g. one copied from "
        f"a machine with network access)."
    )


def docpair_ids(family: str | None = None) -> list[str]:
    """ids in ir_datasets' registry that have docpairs, those of ``family`` (first path component) only when
    it has any."""
    registry = _ir_datasets().registry
    names = list(registry)
    if family:
        same = [n for n in names if n.split("/", 1)[0] == family]
        hits = [n for n in same if registry[n].has_docpairs()]
        if hits:
            return hits
    return [n for n in EXAMPLE_TRIPLES if n in registry]


def _load(dataset_id: str):
    from retrieval_lab.data.irds import _load as load_dataset  # its unknown-id error, with close matches

    try:
        return load_dataset(dataset_id)
    except CollectionError as e:
        raise CollectionError(
            f"train.triples: {e} Datasets with training triples include {', '.join(EXAMPLE_TRIPLES)}"
        ) from None


def _query_text(record: Any) -> str:
    for name in ("text", "title"):
        value = getattr(record, name, None)
        if isinstance(value, str):
            return value
    return str(record.default_text())


def _doc_text(record: Any) -> str:
    """``title text`` when the doc has a non-empty title (as ``Doc.contents()``), else its text."""
    text = getattr(record, "text", None)
    if text is None:
        text = record.default_text()
    title = getattr(record, "title", None) or ""
    return f"{title} {text}" if title else str(text)


class IrDatasetsTriples(torch.utils.data.Dataset):
    """Map-style dataset over the first ``max_triples`` (None: all) docpairs of ir_datasets' ``dataset_id``.

    ``self[i]`` is a :class:`ListItem` ``(query, [positive text, negative text], [1.0, 0.0], qid, [pos id, neg
    id])``. Raises :class:`CollectionError` (a ``ValueError``) for an unknown id, a dataset without docpairs,
    queries or docs, a triple whose query is missing, and when ir_datasets cannot provide the data (no network
    on first use). ``seed`` is accepted for the signature the other training datasets share; the items are
    fixed, so it changes nothing.

    Memory: the ids of every triple read are kept (about 200 bytes a triple, plus the distinct queries'
    texts): cap ``max_triples`` for MS MARCO's 39.8M.
    """

    def __init__(self, dataset_id: str, max_triples: int | None = None, seed: int = 0) -> None:
        if max_triples is not None and max_triples < 1:
            raise ValueError(f"max_triples must be >= 1 (or None for all), got {max_triples}")
        self.dataset_id = dataset_id
        self.max_triples = max_triples
        self.seed = seed
        ds = _load(dataset_id)
        if not ds.has_docpairs():
            family = dataset_id.split("/", 1)[0]
            raise CollectionError(
                f"train.triples: ir_datasets id {dataset_id!r} has no docpairs (training triples); ids that have "
                f"them: {', '.join(docpair_ids(family))}"
            )
        for entity in ("docs", "queries"):
            if not getattr(ds, f"has_{entity}")():
                raise CollectionError(f"train.triples: ir_datasets id {dataset_id!r} has docpairs but no {entity}")
        self._store: Any = None  # ir_datasets' docs store, opened on first use (in each DataLoader worker)

        intern = sys.intern
        try:
            self.triples: list[tuple[str, str, str]] = [
                (intern(str(p.query_id)), intern(str(p.doc_id_a)), intern(str(p.doc_id_b)))
                for p in itertools.islice(ds.docpairs_iter(), max_triples)
            ]
        except CollectionError:
            raise
        except Exception as e:
            raise _unavailable(dataset_id, "docpairs", e) from e
        if not self.triples:
            raise CollectionError(f"train.triples: ir_datasets id {dataset_id!r} has no docpairs (an empty file?)")

        needed = {q for q, _, _ in self.triples}
        self.queries: dict[str, str] = {}
        try:
            for record in ds.queries_iter():
                qid = str(record.query_id)
                if qid in needed and qid not in self.queries:
                    self.queries[qid] = _query_text(record)
                    if len(self.queries) == len(needed):
                        break  # MS MARCO's train queries: 808k, the triples may need far fewer
        except Exception as e:
            raise _unavailable(dataset_id, "queries", e) from e
        missing = sorted(needed - self.queries.keys())
        if missing:
            shown = ", ".join(repr(q) for q in missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise CollectionError(
                f"train.triples: {len(missing)} of the {len(needed)} queries named by the triples of "
                f"{dataset_id!r} are not among its queries: {shown}"
            )
        self.doc_text(self.triples[0][1])  # surface a missing corpus (download, store) now, not at step 1

    # ---------------------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.triples)

    def doc_text(self, doc_id: str) -> str:
        """The text of ``doc_id`` (``title text`` when it has a title), from ir_datasets' docs store."""
        try:
            if self._store is None:
                self._store = _load(self.dataset_id).docs_store()
            record = self._store.get(doc_id)
        except KeyError:
            raise KeyError(f"document {doc_id!r} of a triple of {self.dataset_id!r} is not in its corpus") from None
        except CollectionError:
            raise
        except Exception as e:
            raise _unavailable(self.dataset_id, "documents", e) from e
        return _doc_text(record)

    def __getitem__(self, index: int) -> ListItem:
        qid, pos, neg = self.triples[index]
        return ListItem(self.queries[qid], [self.doc_text(pos), self.doc_text(neg)], [1.0, 0.0], qid, [pos, neg])

    def pairs(self, num_hard_negatives: int = 1) -> TriplePairs:
        """The same triples as retriever pairs (see :class:`TriplePairs`)."""
        return TriplePairs(self, num_hard_negatives)

    def __getstate__(self) -> dict[str, Any]:  # picklable (spawned workers, ddp_spawn): the store is reopened
        state = dict(self.__dict__)
        state["_store"] = None
        return state


class TriplePairs(torch.utils.data.Dataset):
    """Retriever view of :class:`IrDatasetsTriples`: ``self[i]`` is a :class:`PairItem` with the triple's
    positive, its negative as the one hard negative (none with ``num_hard_negatives=0``: in-batch negatives
    only), and as ``positive_ids`` every positive of that query among the triples read (so another item's
    positive that is also one of this query's is not an in-batch negative of it)."""

    def __init__(self, triples: IrDatasetsTriples, num_hard_negatives: int = 1) -> None:
        if num_hard_negatives not in (0, 1):
            raise ValueError(
                f"training triples give one hard negative per query: num_hard_negatives must be 0 or 1, "
                f"got {num_hard_negatives}"
            )
        self.source = triples
        self.num_hard_negatives = num_hard_negatives
        positives: dict[str, set[str]] = {}
        for qid, pos, _ in triples.triples:
            positives.setdefault(qid, set()).add(pos)
        self.positives = {q: frozenset(p) for q, p in positives.items()}

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> PairItem:
        t = self.source
        qid, pos, neg = t.triples[index]
        negs = [neg] if self.num_hard_negatives else []
        return PairItem(t.queries[qid], t.doc_text(pos), [t.doc_text(d) for d in negs], qid, pos, negs,
                        self.positives[qid])
