"""Training data for rerankers (lists) and retrievers (pairs + hard negatives).

Pure python/torch: no model is imported here. Collate functions take the tokenize callables of a model family.

Relevance, in one place (:func:`judged`):

- a doc is a **positive** of a query when its grade is ``>= collection.rel_threshold`` (default 1);
- a doc is **never a sampled negative** when its grade is ``> 0`` ("judged relevant at any grade"); with binary
  qrels (the usual case) the two are the same set. With graded qrels and ``rel_threshold=2`` a grade-1 doc is
  neither drawn as a positive nor as a negative, and it is not an in-batch negative of its query either
  (:attr:`PairItem.excluded_ids`, :func:`in_batch_mask`).

Candidates are ranked as evaluation ranks them (:func:`retrieval_lab.data.runs.ranked`, trec_eval's order: score
descending, ties by doc id descending), so a cut at a depth keeps the documents a metric at that depth sees.

Sampling is deterministic per ``(seed, epoch, item)``: each item's draw uses its own ``random.Random`` seeded with a
string (string seeds are hashed with SHA-512, independent of ``PYTHONHASHSEED``), so the result does not depend
on the order items are read in, on the number of DataLoader workers, or on the process. Call
``dataset.set_epoch(e)`` to move to epoch ``e``; the Lightning modules in :mod:`.modules` do that in
``on_train_start`` and ``on_train_epoch_start``. DataLoader workers hold a copy of the dataset made when an
epoch's iterator is created, so with workers use non-persistent ones (``persistent_workers=False``, the default).
The training stages load through :func:`retrieval_lab.training.loader.train_loader`, whose iterator starts its
workers only when the first batch is asked for (after Lightning has set the epoch), so a resume in the middle of
an epoch is exact with non-persistent workers too; ``num_workers=0`` (tokenising in the main process is cheap next
to the model) is exact in every case.

Items: ``positives="one"`` (default) gives one item per query that has at least one positive, and samples which
positive each epoch (RankT5: "first selecting a document with label 1 for each query"); ``positives="all"`` gives one
item per (query, positive) pair, the same positive every epoch.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import torch

from retrieval_lab.data.runs import ranked

Run = dict[str, dict[str, float]]

_POSITIVE_MODES = ("one", "all")


# --------------------------------------------------------------------------------------------------------------
# helpers


def judged(collection: Any, split: str) -> tuple[dict[str, list[str]], dict[str, set[str]]]:
    """``(positives, excluded)`` per query of ``split``: positives (grade >= rel_threshold and in the corpus,
    sorted by id) and the ids that must never be sampled as negatives (grade > 0). Raises ``ValueError`` naming
    the split when it has no judgments."""
    qrels = getattr(collection, "qrels", {}) or {}
    split_qrels = qrels.get(split)
    if not split_qrels:
        known = ", ".join(sorted(qrels)) or "none"
        raise ValueError(
            f"split {split!r} of collection {getattr(collection, 'name', '?')!r} has no relevance judgments "
            f"(splits with judgments: {known}); training needs qrels for the split"
        )
    threshold = getattr(collection, "rel_threshold", 1)
    corpus = collection.corpus
    positives: dict[str, list[str]] = {}
    excluded: dict[str, set[str]] = {}
    for qid, docs in split_qrels.items():
        # a judged doc may be missing from a pooled corpus (see Collection): it cannot be trained on
        positives[qid] = sorted(d for d, g in docs.items() if g >= threshold and d in corpus)
        excluded[qid] = {d for d, g in docs.items() if g > 0}
    return positives, excluded


def ranked_ids(run_for_query: Mapping[str, float], depth: int | None = None) -> list[str]:
    """Doc ids in :func:`retrieval_lab.data.runs.ranked`'s order (score descending, ties by doc id descending, as
    trec_eval and the evaluation), cut at ``depth``."""
    ids = [d for d, _ in ranked(run_for_query)]
    return ids if depth is None else ids[:depth]


def _warn_shallow_run(run: Run, qids: Iterable[str], depth: int, name: str, corpus_size: int) -> None:
    """One ``UserWarning`` when ``depth`` exceeds the longest candidate list ``run`` has for any of ``qids``
    (unless that list already holds the whole corpus: there is nothing deeper to retrieve)."""
    longest = max((len(run.get(q) or ()) for q in qids), default=0)
    if 0 < longest < min(depth, corpus_size):
        warnings.warn(
            f"{name}={depth} but the first stage retrieved at most {longest} documents per query: negatives come "
            f"from its top {longest} (set retriever.k >= {name})",
            UserWarning,
            stacklevel=3,
        )


def _rng(seed: int, epoch: int, key: str) -> random.Random:
    return random.Random(f"{seed}|{epoch}|{key}")


def _items(positives: dict[str, list[str]], mode: str) -> list[tuple[str, str | None]]:
    """``(qid, fixed positive or None)`` per item, queries in sorted order; queries without positives skipped."""
    if mode not in _POSITIVE_MODES:
        raise ValueError(f"positives must be one of {_POSITIVE_MODES}, got {mode!r}")
    items: list[tuple[str, str | None]] = []
    for qid in sorted(positives):
        if not positives[qid]:
            continue
        if mode == "one":
            items.append((qid, None))
        else:
            items.extend((qid, d) for d in positives[qid])
    return items


class _EpochDataset(torch.utils.data.Dataset):
    seed: int
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)


# --------------------------------------------------------------------------------------------------------------
# rerankers: lists


class ListItem(NamedTuple):
    """One training list: ``query``, ``docs`` (positive first), ``labels`` (1.0 then 0.0s), plus ids."""

    query: str
    docs: list[str]
    labels: list[float]
    qid: str
    doc_ids: list[str]


class RerankerListDataset(_EpochDataset):
    """RankT5-style lists: 1 judged-relevant doc + ``list_size - 1`` negatives drawn uniformly without replacement
    from the run's top-``sample_depth`` docs that are not judged relevant (grade > 0).

    With fewer than ``list_size - 1`` such candidates the list is shorter (all of them are used) and
    :class:`RerankerCollator` pads it with ``mask=False``. A query of the split with a positive but no entry in the
    run raises ``KeyError`` naming it; a split without judgments raises ``ValueError`` naming it (both at
    construction). A query whose run holds only positives gives a list of length 1. A ``sample_depth`` deeper than
    the longest list the run has for the split's queries warns once (``UserWarning``): the first stage was cut
    shallower than the sampling assumes (no warning when that list is the whole corpus).

    ``positives``: "one" (one list per query, positive re-drawn each epoch) or "all" (one list per (query,
    positive)). Labels are binary (1.0 for the positive), as in RankT5.
    """

    def __init__(
        self,
        collection: Any,
        split: str,
        run: Run,
        list_size: int = 36,
        sample_depth: int = 1000,
        seed: int = 0,
        positives: str = "one",
    ) -> None:
        if list_size < 1:
            raise ValueError(f"list_size must be >= 1, got {list_size}")
        if sample_depth < 1:
            raise ValueError(f"sample_depth must be >= 1, got {sample_depth}")
        self.collection = collection
        self.split = split
        self.list_size = list_size
        self.sample_depth = sample_depth
        self.seed = seed
        self.positives_mode = positives
        self.positives, excluded = judged(collection, split)
        self.items = _items(self.positives, positives)
        if not self.items:
            raise ValueError(f"split {split!r} has judgments but no query with a relevant doc")
        missing = sorted({q for q, _ in self.items if not run.get(q)})
        if missing:
            shown = ", ".join(repr(q) for q in missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise KeyError(
                f"the run has no candidates for query {shown} of split {split!r} "
                f"({len(missing)} of {len({q for q, _ in self.items})} queries); "
                "negatives are sampled from the run, so retrieve for these queries first"
            )
        _warn_shallow_run(run, {q for q, _ in self.items}, sample_depth, "sample_depth", len(collection.corpus))
        # candidate pools, fixed once: top-depth by score, judged-relevant removed
        self.pools: dict[str, list[str]] = {
            q: [d for d in ranked_ids(run[q], sample_depth) if d not in excluded[q] and d in collection.corpus]
            for q in {q for q, _ in self.items}
        }

    def __len__(self) -> int:
        return len(self.items)

    def sample_ids(self, index: int) -> tuple[str, list[str]]:
        """``(qid, [positive id, negative ids...])`` of item ``index`` at the current epoch."""
        qid, fixed = self.items[index]
        rng = _rng(self.seed, self.epoch, f"{index}|{qid}")
        pos = fixed if fixed is not None else rng.choice(self.positives[qid])
        pool = self.pools[qid]
        negatives = rng.sample(pool, min(self.list_size - 1, len(pool)))
        return qid, [pos, *negatives]

    def __getitem__(self, index: int) -> ListItem:
        qid, ids = self.sample_ids(index)
        corpus = self.collection.corpus
        docs = [corpus[d].contents() for d in ids]
        labels = [1.0] + [0.0] * (len(ids) - 1)
        return ListItem(self.collection.queries[qid], docs, labels, qid, ids)


class RerankEvalDataset(torch.utils.data.Dataset):
    """Validation lists: the run's top-``depth`` docs of each judged query of ``split``, graded labels from the
    qrels (0 for unjudged). Queries without candidates are skipped. Keep ``depth`` small: every pair is scored."""

    def __init__(self, collection: Any, split: str, run: Run, depth: int = 20, max_queries: int | None = None):
        judged(collection, split)  # clear error for a split without judgments
        qrels = collection.qrels[split]
        qids = [q for q in sorted(qrels) if run.get(q)]
        if max_queries is not None:
            qids = qids[:max_queries]
        self.collection = collection
        self.entries = []
        for q in qids:
            ids = [d for d in ranked_ids(run[q], None) if d in collection.corpus][:depth]
            if ids:
                self.entries.append((q, ids, [float(qrels[q].get(d, 0)) for d in ids]))

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> ListItem:
        qid, ids, labels = self.entries[index]
        corpus = self.collection.corpus
        return ListItem(self.collection.queries[qid], [corpus[d].contents() for d in ids], list(labels), qid, ids)


class RerankerCollator:
    """Collate :class:`ListItem` s for a cross-encoder-like family.

    Only the real (query, doc) pairs are tokenized, flattened row by row in list order (padding is never run
    through the model). Returns ``{"pairs": tokenize_pairs(queries, docs), "labels": [B, L] float,
    "mask": [B, L] bool, "qids": [...], "doc_ids": [[...]]}``; ``L`` is the longest list of the batch, or
    ``pad_to`` if given. The flattened pairs fill ``mask``'s True entries in row-major order, so
    ``scores.new_zeros(B, L).masked_scatter(mask, pair_scores)`` rebuilds the score matrix.
    """

    def __init__(self, tokenize_pairs: Callable[[list[str], list[str]], Any], pad_to: int | None = None):
        self.tokenize_pairs = tokenize_pairs
        self.pad_to = pad_to

    def __call__(self, items: Sequence[ListItem]) -> dict[str, Any]:
        length = max(len(it.docs) for it in items)
        if self.pad_to is not None:
            length = max(length, self.pad_to)
        labels = torch.zeros(len(items), length)
        mask = torch.zeros(len(items), length, dtype=torch.bool)
        queries: list[str] = []
        docs: list[str] = []
        for b, it in enumerate(items):
            n = len(it.docs)
            labels[b, :n] = torch.tensor(it.labels, dtype=torch.float)
            mask[b, :n] = True
            queries.extend([it.query] * n)
            docs.extend(it.docs)
        return {
            "pairs": self.tokenize_pairs(queries, docs),
            "labels": labels,
            "mask": mask,
            "qids": [it.qid for it in items],
            "doc_ids": [list(it.doc_ids) for it in items],
        }


class RetrieverListCollator:
    """Collate :class:`ListItem` s (e.g. :class:`RerankEvalDataset`) for a bi-encoder-like family: queries and
    docs are tokenized separately. Returns ``{"queries": [B], "docs": [n real docs, row by row], "labels",
    "mask", "qids", "doc_ids"}`` (labels/mask as :class:`RerankerCollator`)."""

    def __init__(self, tokenize_queries: Callable[[list[str]], Any], tokenize_docs: Callable[[list[str]], Any]):
        self.tokenize_queries = tokenize_queries
        self.tokenize_docs = tokenize_docs

    def __call__(self, items: Sequence[ListItem]) -> dict[str, Any]:
        length = max(len(it.docs) for it in items)
        labels = torch.zeros(len(items), length)
        mask = torch.zeros(len(items), length, dtype=torch.bool)
        for b, it in enumerate(items):
            labels[b, : len(it.docs)] = torch.tensor(it.labels, dtype=torch.float)
            mask[b, : len(it.docs)] = True
        return {
            "queries": self.tokenize_queries([it.query for it in items]),
            "docs": self.tokenize_docs([t for it in items for t in it.docs]),
            "labels": labels,
            "mask": mask,
            "qids": [it.qid for it in items],
            "doc_ids": [list(it.doc_ids) for it in items],
        }


# --------------------------------------------------------------------------------------------------------------
# retrievers: (query, positive, hard negatives)


class PairItem(NamedTuple):
    """One retriever example: texts first, then ids. ``positive_ids`` is every judged positive of the query, so
    the module can tell when another query's doc in the batch is relevant to this one (RepBERT 3.2);
    ``excluded_ids`` the docs judged relevant at a grade below ``rel_threshold`` (grade > 0, not positives),
    which must not be in-batch negatives of the query either (masked out, :func:`in_batch_mask`)."""

    query: str
    positive: str
    negatives: list[str]
    qid: str
    positive_id: str
    negative_ids: list[str]
    positive_ids: frozenset[str]
    excluded_ids: frozenset[str] = frozenset()


class RetrieverPairDataset(_EpochDataset):
    """(query, positive, ``num_hard_negatives`` hard negatives) per item.

    Hard negatives are drawn uniformly without replacement from the run's top-``hard_negative_depth`` docs that
    are not judged relevant (grade > 0). Every item has exactly ``num_hard_negatives`` of them, so batches stay
    rectangular: when the run has fewer candidates for a query, the rest are drawn uniformly from the corpus
    (excluding judged-relevant docs and the ones already drawn). ``run`` is required when
    ``num_hard_negatives > 0``; a query missing from it raises ``KeyError`` naming it. A
    ``hard_negative_depth`` deeper than the longest list the run has for the split's queries warns once
    (``UserWarning``; not when that list is the whole corpus). ``positives``: "one"/"all" as in
    :class:`RerankerListDataset`.
    """

    def __init__(
        self,
        collection: Any,
        split: str,
        run: Run | None = None,
        num_hard_negatives: int = 0,
        hard_negative_depth: int = 100,
        seed: int = 0,
        positives: str = "one",
    ) -> None:
        if num_hard_negatives < 0:
            raise ValueError(f"num_hard_negatives must be >= 0, got {num_hard_negatives}")
        if num_hard_negatives > 0 and run is None:
            raise ValueError("num_hard_negatives > 0 needs a run to draw hard negatives from")
        self.collection = collection
        self.split = split
        self.num_hard_negatives = num_hard_negatives
        self.hard_negative_depth = hard_negative_depth
        self.seed = seed
        self.positives, self.excluded = judged(collection, split)
        self.items = _items(self.positives, positives)
        if not self.items:
            raise ValueError(f"split {split!r} has judgments but no query with a relevant doc")
        self.pools: dict[str, list[str]] = {}
        self._corpus_ids: list[str] | None = None
        if num_hard_negatives > 0:
            assert run is not None
            qids = sorted({q for q, _ in self.items})
            missing = [q for q in qids if not run.get(q)]
            if missing:
                shown = ", ".join(repr(q) for q in missing[:5]) + (" ..." if len(missing) > 5 else "")
                raise KeyError(f"the run has no candidates for query {shown} of split {split!r}")
            corpus = collection.corpus
            _warn_shallow_run(run, qids, hard_negative_depth, "hard_negative_depth", len(corpus))
            for q in qids:
                self.pools[q] = [
                    d for d in ranked_ids(run[q], hard_negative_depth) if d not in self.excluded[q] and d in corpus
                ]

    def __len__(self) -> int:
        return len(self.items)

    def _corpus(self) -> list[str]:
        if self._corpus_ids is None:
            self._corpus_ids = list(self.collection.corpus.ids())
        return self._corpus_ids

    def sample_ids(self, index: int) -> tuple[str, str, list[str]]:
        qid, fixed = self.items[index]
        rng = _rng(self.seed, self.epoch, f"{index}|{qid}")
        pos = fixed if fixed is not None else rng.choice(self.positives[qid])
        h = self.num_hard_negatives
        if h == 0:
            return qid, pos, []
        pool = self.pools[qid]
        negs = rng.sample(pool, min(h, len(pool)))
        if len(negs) < h:  # top up with random corpus docs
            taken = set(negs) | self.excluded[qid]
            rest = [d for d in self._corpus() if d not in taken]
            if len(rest) < h - len(negs):
                raise ValueError(f"query {qid!r}: the corpus has too few non-relevant docs for {h} negatives")
            negs += rng.sample(rest, h - len(negs))
        return qid, pos, negs

    def __getitem__(self, index: int) -> PairItem:
        qid, pos, negs = self.sample_ids(index)
        corpus = self.collection.corpus
        return PairItem(
            self.collection.queries[qid],
            corpus[pos].contents(),
            [corpus[d].contents() for d in negs],
            qid,
            pos,
            list(negs),
            frozenset(self.positives[qid]),
            frozenset(self.excluded[qid] - set(self.positives[qid])),
        )


class RetrieverCollator:
    """Collate :class:`PairItem` s for a bi-encoder-like family.

    Docs are ordered ``[positive_0 .. positive_{B-1}, negatives of query 0 (h), negatives of query 1, ...]``.
    Returns ``{"queries": tokenize_queries(...), "docs": tokenize_docs(...), "doc_ids": [B*(1+h)],
    "doc_owner": LongTensor[B*(1+h)] (the item each doc came with), "positive_ids": [frozenset per query],
    "excluded_ids": [frozenset per query], "qids": [...]}``.
    """

    def __init__(self, tokenize_queries: Callable[[list[str]], Any], tokenize_docs: Callable[[list[str]], Any]):
        self.tokenize_queries = tokenize_queries
        self.tokenize_docs = tokenize_docs

    def __call__(self, items: Sequence[PairItem]) -> dict[str, Any]:
        docs = [it.positive for it in items] + [t for it in items for t in it.negatives]
        doc_ids = [it.positive_id for it in items] + [d for it in items for d in it.negative_ids]
        owner = list(range(len(items))) + [b for b, it in enumerate(items) for _ in it.negative_ids]
        return {
            "queries": self.tokenize_queries([it.query for it in items]),
            "docs": self.tokenize_docs(docs),
            "doc_ids": doc_ids,
            "doc_owner": torch.tensor(owner, dtype=torch.long),
            "positive_ids": [it.positive_ids for it in items],
            "excluded_ids": [it.excluded_ids for it in items],
            "qids": [it.qid for it in items],
        }


def in_batch_labels(positive_ids: Sequence[frozenset[str] | set[str]], doc_ids: Sequence[str]) -> torch.Tensor:
    """``labels[b, j] = 1.0`` iff ``doc_ids[j]`` is a judged positive of query ``b`` (RepBERT 3.2: another query's
    positive that is also relevant to ``b`` is a positive of ``b``, not a negative)."""
    columns: dict[str, list[int]] = {}
    for j, d in enumerate(doc_ids):
        columns.setdefault(d, []).append(j)
    labels = torch.zeros(len(positive_ids), len(doc_ids))
    for b, pos in enumerate(positive_ids):
        for d in pos:
            for j in columns.get(d, ()):
                labels[b, j] = 1.0
    return labels


def in_batch_mask(
    excluded_ids: Sequence[frozenset[str] | set[str]],
    positive_ids: Sequence[frozenset[str] | set[str]],
    doc_ids: Sequence[str],
) -> torch.Tensor:
    """``mask[b, j] = False`` iff ``doc_ids[j]`` is in ``excluded_ids[b]`` and not in ``positive_ids[b]``; True
    elsewhere (bool ``[B, len(doc_ids)]``).

    ``excluded_ids[b]``: docs judged relevant to query ``b`` at a grade below the collection's ``rel_threshold``
    (:attr:`PairItem.excluded_ids`; passing every doc with grade > 0 gives the same mask, positives are kept).
    Such a doc, in the batch as another query's positive or negative, is neither a positive nor a negative of
    ``b``: labelling it 0 would push ``b`` away from a doc judged relevant to it."""
    if len(excluded_ids) != len(positive_ids):
        raise ValueError(f"{len(excluded_ids)} excluded-id sets for {len(positive_ids)} queries")
    columns: dict[str, list[int]] = {}
    for j, d in enumerate(doc_ids):
        columns.setdefault(d, []).append(j)
    mask = torch.ones(len(positive_ids), len(doc_ids), dtype=torch.bool)
    for b, (excluded, pos) in enumerate(zip(excluded_ids, positive_ids)):
        for d in excluded:
            if d in pos:
                continue
            for j in columns.get(d, ()):
                mask[b, j] = False
    return mask
