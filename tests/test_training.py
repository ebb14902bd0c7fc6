"""Training: list / pair sampling, in-batch labels, modules that learn, resume. Tiny data built here."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
import torch

from retrieval_lab.data.collection import Collection, Corpus, Doc
from retrieval_lab.training.data import (
    RerankerCollator,
    RerankerListDataset,
    RerankEvalDataset,
    RetrieverCollator,
    RetrieverPairDataset,
    in_batch_labels,
    ranked_ids,
)

# ---------------------------------------------------------------------------------------------------------------
# a tiny handcrafted collection: 10 docs, 6 queries


def tiny_collection(extra_split: dict | None = None) -> Collection:
    docs = [Doc(f"d{i}", f"text of document {i}", title=f"t{i}" if i % 2 else "") for i in range(10)]
    queries = {f"q{i}": f"query number {i}" for i in range(6)}
    train = {
        "q0": {"d0": 1, "d1": 0},  # d1 judged non-relevant: may be a negative
        "q1": {"d1": 1, "d2": 2},  # two positives
        "q2": {"d2": 1, "d9": 0},
        "q3": {"d3": 1, "d4": 1, "d5": 0},
        "q4": {"d0": 0},  # judged, no positive: skipped
        "q5": {"d5": 1},
    }
    qrels = {"train": train, "empty": {}}
    if extra_split:
        qrels.update(extra_split)
    return Collection("tiny", Corpus(docs), queries, qrels)


def tiny_run() -> dict[str, dict[str, float]]:
    # every query ranks all docs, d9 first ... d0 last (score = index), q-dependent shift to vary it
    run = {}
    for q in range(6):
        run[f"q{q}"] = {f"d{i}": float((i + q) % 10) for i in range(10)}
    return run


def positives_of(collection, split="train"):
    return {q: {d for d, g in docs.items() if g >= 1} for q, docs in collection.qrels[split].items()}


# ---------------------------------------------------------------------------------------------------------------
# reranker lists


def test_lists_positive_first_negatives_unjudged_and_from_top_k():
    c = tiny_collection()
    run = tiny_run()
    depth = 6
    ds = RerankerListDataset(c, "train", run, list_size=4, sample_depth=depth, seed=1)
    pos = positives_of(c)
    # q4 has no positive: no item; 5 queries with positives, one item each ("one" mode)
    assert sorted(it[0] for it in ds.items) == ["q0", "q1", "q2", "q3", "q5"]
    for epoch in range(20):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item = ds[i]
            top = set(ranked_ids(run[item.qid], depth))
            assert item.doc_ids[0] in pos[item.qid]
            assert item.labels == [1.0] + [0.0] * (len(item.doc_ids) - 1)
            negs = item.doc_ids[1:]
            assert len(negs) == len(set(negs)) == 3  # without replacement
            assert not set(negs) & pos[item.qid]  # never judged relevant
            assert set(negs) <= top  # only the run's top-k
            assert item.docs == [c.corpus[d].contents() for d in item.doc_ids]
            assert item.query == c.queries[item.qid]


def test_lists_judged_nonrelevant_docs_can_be_negatives():
    c = tiny_collection()
    run = tiny_run()
    ds = RerankerListDataset(c, "train", run, list_size=10, sample_depth=1000)
    i = [q for q, _ in ds.items].index("q0")
    # q0: d0 relevant, d1 judged 0 -> the pool is all 9 others, list takes them all
    assert sorted(ds[i].doc_ids[1:]) == sorted(f"d{k}" for k in range(1, 10))


def test_lists_negatives_are_uniform_over_the_pool():
    """Over many epochs each of the pool's docs is drawn equally often (chi-square, 8 docs -> 7 dof)."""
    c = tiny_collection()
    run = tiny_run()
    ds = RerankerListDataset(c, "train", run, list_size=4, sample_depth=10, seed=0)
    i = [q for q, _ in ds.items].index("q5")  # pool: 9 docs minus d5 = 9 docs
    pool = ds.pools["q5"]
    assert len(pool) == 9 and "d5" not in pool
    epochs = 3000
    counts = Counter()
    for e in range(epochs):
        ds.set_epoch(e)
        counts.update(ds.sample_ids(i)[1][1:])
    expected = epochs * 3 / len(pool)
    chi2 = sum((counts[d] - expected) ** 2 / expected for d in pool)
    # 8 dof: P(chi2 > 26.1) = 0.001. Sampling only from the top-3 of the pool would give chi2 ~ 6000.
    assert chi2 < 26.1, (chi2, counts)
    # and the positive choice is uniform too (q1 has two positives)
    j = [q for q, _ in ds.items].index("q1")
    firsts = Counter()
    for e in range(2000):
        ds.set_epoch(e)
        firsts[ds.sample_ids(j)[1][0]] += 1
    assert set(firsts) == {"d1", "d2"} and abs(firsts["d1"] - 1000) < 120


def test_lists_deterministic_per_seed_and_epoch():
    c = tiny_collection()
    run = tiny_run()
    a = RerankerListDataset(c, "train", run, list_size=4, sample_depth=10, seed=3)
    b = RerankerListDataset(c, "train", run, list_size=4, sample_depth=10, seed=3)
    other_seed = RerankerListDataset(c, "train", run, list_size=4, sample_depth=10, seed=4)
    b.set_epoch(2)
    a.set_epoch(2)
    # independent of read order
    assert [a[i].doc_ids for i in range(len(a))] == [b[i].doc_ids for i in reversed(range(len(b)))][::-1]
    lists_e2 = [a[i].doc_ids for i in range(len(a))]
    a.set_epoch(3)
    assert [a[i].doc_ids for i in range(len(a))] != lists_e2
    other_seed.set_epoch(2)
    assert [other_seed[i].doc_ids for i in range(len(a))] != lists_e2


def test_lists_all_positives_mode():
    c = tiny_collection()
    ds = RerankerListDataset(c, "train", tiny_run(), list_size=3, positives="all")
    pairs = sorted((q, d) for q, d in ds.items)
    assert pairs == [("q0", "d0"), ("q1", "d1"), ("q1", "d2"), ("q2", "d2"), ("q3", "d3"), ("q3", "d4"),
                     ("q5", "d5")]
    for i, (q, d) in enumerate(ds.items):
        assert ds[i].doc_ids[0] == d
    with pytest.raises(ValueError, match="positives"):
        RerankerListDataset(c, "train", tiny_run(), positives="some")


def test_lists_shorter_when_few_candidates_and_collate_pads_with_mask():
    c = tiny_collection()
    run = tiny_run()
    run["q3"] = {"d3": 5.0, "d4": 4.0, "d7": 3.0, "d8": 2.0}  # pool without positives: d7, d8
    run["q0"] = {"d0": 1.0}  # only the positive itself: a list of length 1
    ds = RerankerListDataset(c, "train", run, list_size=5, sample_depth=100)
    by_q = {ds[i].qid: ds[i] for i in range(len(ds))}
    assert sorted(by_q["q3"].doc_ids[1:]) == ["d7", "d8"]
    assert by_q["q0"].doc_ids == ["d0"]

    calls = []

    def tokenize_pairs(queries, docs):
        calls.append((list(queries), list(docs)))
        return {"n": len(docs)}

    items = [by_q["q3"], by_q["q0"], by_q["q1"]]
    batch = RerankerCollator(tokenize_pairs)(items)
    assert batch["mask"].tolist() == [[True] * 3 + [False] * 2, [True] + [False] * 4, [True] * 5]
    assert batch["labels"].tolist() == [[1, 0, 0, 0, 0], [1, 0, 0, 0, 0], [1, 0, 0, 0, 0]]
    # only the 3 + 1 + 5 real pairs are tokenized, row by row, each with its own query
    queries, docs = calls[0]
    assert len(docs) == 9 and batch["pairs"]["n"] == 9
    assert queries == [c.queries["q3"]] * 3 + [c.queries["q0"]] + [c.queries["q1"]] * 5
    assert docs[:3] == by_q["q3"].docs and docs[3] == by_q["q0"].docs[0]
    # scores put back with masked_scatter land in the right cells
    flat = torch.arange(9, dtype=torch.float)
    full = flat.new_zeros(batch["mask"].shape).masked_scatter(batch["mask"], flat)
    assert full[1, 0] == 3 and full[2, 4] == 8 and full[0, 3] == 0
    # pad_to fixes the width
    assert RerankerCollator(tokenize_pairs, pad_to=7)(items)["mask"].shape == (3, 7)


def test_lists_errors_name_the_split_and_the_query():
    c = tiny_collection()
    run = tiny_run()
    with pytest.raises(ValueError, match="'empty'"):
        RerankerListDataset(c, "empty", run)
    with pytest.raises(ValueError, match="'nosuchsplit'"):
        RerankerListDataset(c, "nosuchsplit", run)
    del run["q3"]
    with pytest.raises(KeyError, match="'q3'"):
        RerankerListDataset(c, "train", run)
    run = tiny_run()
    run["q5"] = {}
    with pytest.raises(KeyError, match="'q5'"):
        RerankerListDataset(c, "train", run)


def test_positive_missing_from_a_pooled_corpus_is_not_used():
    c = tiny_collection({"pooled": {"q0": {"d0": 1, "gone": 1}}})
    ds = RerankerListDataset(c, "pooled", tiny_run(), list_size=3, positives="all")
    assert ds.items == [("q0", "d0")]


def test_eval_lists_take_the_top_depth_with_graded_labels():
    c = tiny_collection()
    run = tiny_run()
    ds = RerankEvalDataset(c, "train", run, depth=4)
    item = ds[[e[0] for e in ds.entries].index("q1")]
    assert item.doc_ids == ranked_ids(run["q1"], 4)  # q1: d8, d7, d6, d5
    run["q1"]["d2"] = 100.0
    item = RerankEvalDataset(c, "train", run, depth=4)[1]
    assert item.qid == "q1" and item.doc_ids[0] == "d2" and item.labels[0] == 2.0 and item.labels[1:] == [0, 0, 0]


# ---------------------------------------------------------------------------------------------------------------
# retriever pairs + in-batch labels


def test_pairs_hard_negatives_from_top_depth_excluding_positives():
    c = tiny_collection()
    run = tiny_run()
    ds = RetrieverPairDataset(c, "train", run, num_hard_negatives=2, hard_negative_depth=4, seed=0)
    pos = positives_of(c)
    for e in range(10):
        ds.set_epoch(e)
        for i in range(len(ds)):
            it = ds[i]
            assert it.positive_id in pos[it.qid] and it.positive_ids == frozenset(pos[it.qid])
            assert len(it.negative_ids) == 2 == len(set(it.negative_ids))
            assert not set(it.negative_ids) & pos[it.qid]
            assert set(it.negative_ids) <= set(ranked_ids(run[it.qid], 4))
            assert it.negatives == [c.corpus[d].contents() for d in it.negative_ids]
    # no run, no hard negatives: fine; hard negatives without a run: an error
    assert RetrieverPairDataset(c, "train")[0].negatives == []
    with pytest.raises(ValueError, match="run"):
        RetrieverPairDataset(c, "train", None, num_hard_negatives=1)
    with pytest.raises(ValueError, match="'empty'"):
        RetrieverPairDataset(c, "empty", run)


def test_pairs_top_up_from_corpus_when_run_is_short():
    c = tiny_collection()
    run = tiny_run()
    run["q5"] = {"d5": 3.0, "d6": 2.0}  # a single non-positive candidate
    ds = RetrieverPairDataset(c, "train", run, num_hard_negatives=3)
    it = ds[[q for q, _ in ds.items].index("q5")]
    assert it.negative_ids[0] == "d6" and len(set(it.negative_ids)) == 3 and "d5" not in it.negative_ids


def test_in_batch_label_matrix_marks_other_queries_judged_positives():
    """RepBERT 3.2: q1's judged positives are d1 and d2; q2's positive d2 sits in the batch as q2's positive,
    so for q1 it is a positive too, not a negative. Hand-built expected matrix."""
    c = tiny_collection()
    run = {q: {"d9": 1.0, "d8": 0.9, "d7": 0.8} for q in c.queries}
    ds = RetrieverPairDataset(c, "train", run, num_hard_negatives=1, positives="all")
    idx = {(q, d): i for i, (q, d) in enumerate(ds.items)}
    items = [ds[idx[("q1", "d1")]], ds[idx[("q2", "d2")]], ds[idx[("q3", "d3")]]]
    batch = RetrieverCollator(lambda t: list(t), lambda t: list(t))(items)
    negs = [it.negative_ids[0] for it in items]
    assert batch["doc_ids"] == ["d1", "d2", "d3", *negs]
    assert batch["doc_owner"].tolist() == [0, 1, 2, 0, 1, 2]
    labels = in_batch_labels(batch["positive_ids"], batch["doc_ids"])
    expected = torch.tensor(
        [
            # d1  d2  d3  n0  n1  n2
            [1.0, 1.0, 0.0, 0.0, 0.0, 0.0],  # q1: d1 and d2 (q2's positive, judged relevant for q1)
            [0.0, 1.0, 0.0, 0.0, 0.0, 0.0],  # q2: d2 only (d1 is not judged for q2)
            [0.0, 0.0, 1.0, 0.0, 0.0, 0.0],  # q3: d3
        ]
    )
    assert torch.equal(labels, expected)
    # duplicates (the same doc twice in a batch) are positive in every column they appear in
    assert in_batch_labels([frozenset({"a"})], ["a", "b", "a"]).tolist() == [[1.0, 0.0, 1.0]]
