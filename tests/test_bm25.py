"""BM25Index: Lucene BM25 numbers by hand, backend agreement, persistence, tokenisation, and SciFact effectiveness."""

from __future__ import annotations

import json
import math

import numba  # noqa: F401  (installed with ranx, a hard dependency; bm25s uses it for backend="numba")
import pytest

from retrieval_lab.indexes import BM25Index, Tokenizer
from tests.conftest import DATA, needs_data

BACKENDS = ["bm25s", "rank_bm25"]

# Every word is its own Porter2 stem and none is a stop word, so the hand computation needs no tokeniser.
TOY_IDS = ["d1", "d2", "d3"]
TOY_TEXTS = ["cat cat dog", "cat bird", "bird fish fish fish"]  # lengths 3, 2, 4 -> avgdl = 3


def lucene_idf(n_docs: int, df: int) -> float:
    return math.log(1 + (n_docs - df + 0.5) / (df + 0.5))


def lucene_tf(tf: int, dl: float, avgdl: float, k1: float, b: float) -> float:
    return tf / (tf + k1 * (1 - b + b * dl / avgdl))


def toy_index(backend: str, **kw) -> BM25Index:
    index = BM25Index(backend=backend, **kw)
    index.build(TOY_IDS, TOY_TEXTS, show_progress=False)
    return index


@pytest.mark.parametrize("backend", BACKENDS)
def test_scores_are_lucene_bm25_by_hand(backend):
    index = toy_index(backend, k1=0.9, b=0.4)
    n, avgdl = 3, 3.0
    # "cat": df 2.  d1: tf 2, dl 3.  d2: tf 1, dl 2.
    idf_cat = lucene_idf(n, 2)
    assert idf_cat == pytest.approx(math.log(1.6))
    expected_cat = {
        "d1": idf_cat * lucene_tf(2, 3, avgdl, 0.9, 0.4),  # ln 1.6 * 2 / 2.9
        "d2": idf_cat * lucene_tf(1, 2, avgdl, 0.9, 0.4),  # ln 1.6 * 1 / (1 + 0.9 * (0.6 + 0.4 * 2/3))
    }
    assert expected_cat["d1"] == pytest.approx(0.3241404339)
    assert expected_cat["d2"] == pytest.approx(0.2640469827)
    hits = index.search(["cat"], k=10)[0]
    assert [d for d, _ in hits] == ["d1", "d2"]  # d3 has no "cat": not returned at all
    for doc, score in hits:
        assert score == pytest.approx(expected_cat[doc], rel=1e-6)

    # Two terms: "cat fish" on d3 is fish only (df 1, tf 3, dl 4); d1, d2 are cat only.
    idf_fish = lucene_idf(n, 1)
    expected_d3 = idf_fish * lucene_tf(3, 4, avgdl, 0.9, 0.4)
    assert expected_d3 == pytest.approx(math.log(1 + 2.5 / 1.5) * 3 / (3 + 0.9 * (0.6 + 0.4 * 4 / 3)))
    hits = dict(index.search(["cat fish"], k=10)[0])
    assert hits == pytest.approx({"d3": expected_d3, **expected_cat}, rel=1e-6)

    # A repeated query term counts twice (as in Lucene/Anserini bag-of-words queries and in both libraries).
    hits = dict(index.search(["fish fish"], k=10)[0])
    assert hits == pytest.approx({"d3": 2 * expected_d3}, rel=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_k1_b_change_scores_as_the_formula_says(backend):
    index = toy_index(backend, k1=1.2, b=0.75)
    got = dict(index.search(["bird"], k=10)[0])
    idf = lucene_idf(3, 2)
    assert got == pytest.approx(
        {"d2": idf * lucene_tf(1, 2, 3.0, 1.2, 0.75), "d3": idf * lucene_tf(1, 4, 3.0, 1.2, 0.75)}, rel=1e-6
    )


def test_backends_rank_and_score_the_same():
    texts = [
        "The cat sat on the mat with another cat",
        "Dogs are running in the park",
        "A dog runs after the cat",
        "Mice fear cats and dogs alike",
        "Nothing relevant here at all",
        "running running running dogs",
    ]
    ids = [f"doc{i}" for i in range(len(texts))]
    queries = ["cat", "running dog", "cats and mice", "park", "relevant nothing", "zebra", "dog dog cat"]
    results = {}
    for backend in BACKENDS:
        index = BM25Index(backend=backend)
        index.build(ids, texts, show_progress=False)
        results[backend] = index.search(queries, k=4)
    a, b = results["bm25s"], results["rank_bm25"]
    for qa, qb in zip(a, b):
        assert [d for d, _ in qa] == [d for d, _ in qb]
        assert [s for _, s in qa] == pytest.approx([s for _, s in qb], rel=1e-6)
    assert a[queries.index("zebra")] == []
    assert all(len(r) <= 4 for r in a)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_in_corpus_order_and_k(backend):
    index = BM25Index(backend=backend)
    index.build(["z", "y", "x", "w"], ["apple pie", "apple tart", "apple cake", "pear"], show_progress=False)
    hits = index.search(["apple"], k=10)[0]
    assert [d for d, _ in hits] == ["z", "y", "x"]  # equal scores: corpus order; "w" has score 0: dropped
    assert len({s for _, s in hits}) == 1
    assert [d for d, _ in index.search(["apple"], k=2)[0]] == ["z", "y"]
    assert index.search([""], k=3) == [[]]
    assert index.search([], k=3) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_search_run_and_search_arrays_agree_with_search(backend):
    index = toy_index(backend)
    queries = ["cat", "bird fish", "unknown", "dog cat bird"]
    hits = index.search(queries, k=2)
    assert index.search_run(["q1", "q2", "q3", "q4"], queries, k=2) == {
        q: dict(h) for q, h in zip(["q1", "q2", "q3", "q4"], hits)
    }
    scores, positions = index.search_arrays(queries, k=2)
    assert positions.shape == scores.shape == (4, 2)
    assert positions[2].tolist() == [-1, -1] and scores[2].tolist() == [0, 0]  # no match: padding
    for row, h in enumerate(hits):
        got = [(TOY_IDS[p], float(s)) for p, s in zip(positions[row], scores[row]) if p >= 0]
        assert got == h
    with pytest.raises(ValueError):
        index.search_run(["q1"], queries, k=2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_save_load_round_trip(backend, tmp_path):
    index = toy_index(backend)
    queries = ["cat", "bird fish", "dog cat bird", "unknown"]
    before = index.search(queries, k=3)
    index.save(tmp_path / "idx")
    loaded = BM25Index.load(tmp_path / "idx")
    assert loaded.settings() == index.settings()
    assert loaded.num_docs == 3 and loaded.doc_ids == TOY_IDS
    assert loaded.search(queries, k=3) == before  # identical, not approximately


def test_load_rejects_other_directories(tmp_path):
    with pytest.raises(FileNotFoundError):
        BM25Index.load(tmp_path)


@pytest.mark.parametrize("backend", BACKENDS)
def test_stemming_makes_running_match_runs(backend):
    ids, texts = ["a", "b"], ["she runs every day", "he walks"]
    stemmed = BM25Index(backend=backend, stemmer="english")
    stemmed.build(ids, texts, show_progress=False)
    assert [d for d, _ in stemmed.search(["running"], k=2)[0]] == ["a"]
    plain = BM25Index(backend=backend, stemmer=None)
    plain.build(ids, texts, show_progress=False)
    assert plain.search(["running"], k=2)[0] == []
    assert [d for d, _ in plain.search(["runs"], k=2)[0]] == ["a"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_stopwords_option(backend):
    ids, texts = ["a", "b"], ["the theory of everything", "a cat"]
    with_stop = BM25Index(backend=backend, stopwords="en")
    with_stop.build(ids, texts, show_progress=False)
    assert with_stop.search(["the"], k=2) == [[]]
    without = BM25Index(backend=backend, stopwords=None)
    without.build(ids, texts, show_progress=False)
    assert [d for d, _ in without.search(["the"], k=2)[0]] == ["a"]
    # stop words also leave the document lengths: "the theory of everything" is 2 terms long with "en"
    assert Tokenizer(stopwords="en")(texts[0]) == ["theori", "everyth"]
    assert Tokenizer(stopwords=None, stemmer=None)(texts[0]) == ["the", "theory", "of", "everything"]


def test_tokenizer_matches_bm25s_tokenize():
    import bm25s
    import Stemmer

    texts = ["Héllo, WORLD!! It's 2024: state-of-the-art BM25s_tokenizers running x y", "", "a an the"]
    ours = Tokenizer(stopwords="en", stemmer="english").tokenize(texts)
    theirs = bm25s.tokenize(texts, stopwords="en", stemmer=Stemmer.Stemmer("english"), return_ids=False,
                            show_progress=False)
    assert ours == theirs
    assert ours[0][:3] == ["héllo", "world", "2024"]  # unicode \w, lowercase, "it" (stop word) and "s" dropped


def test_settings_and_validation():
    base = BM25Index().settings()
    assert base["k1"] == 0.9 and base["b"] == 0.4 and base["method"] == "lucene"
    assert base["stopwords"] == "en" and base["stemmer"] == "english" and base["backend"] == "bm25s"
    assert BM25Index(stemmer=None).settings() != base
    assert BM25Index(k1=1.2).settings() != base
    assert BM25Index(backend="rank_bm25").settings() != base
    assert BM25Index(n_threads=2).settings() == base  # speed options are not part of the key
    json.dumps(base)  # JSON-able, for cache keys
    with pytest.raises(ValueError, match="rank_bm25"):
        BM25Index(backend="rank_bm25", method="atire")
    with pytest.raises(ValueError):
        BM25Index(backend="pyserini")
    with pytest.raises(ValueError):
        BM25Index(stopwords="klingon")
    with pytest.raises(RuntimeError):
        BM25Index().search(["x"], k=1)
    with pytest.raises(ValueError, match="duplicate"):
        BM25Index().build(["a", "a"], ["x y", "z w"], show_progress=False)
    with pytest.raises(TypeError):
        toy_index("bm25s").search("cat", k=1)


def test_numba_and_numpy_kernels_and_threads_give_identical_results():
    queries = ["cat", "bird fish", "dog cat bird", "unknown", "fish fish cat"]
    expected = toy_index("bm25s", bm25s_backend="numpy").search(queries, k=3)
    assert toy_index("bm25s", bm25s_backend="numba").search(queries, k=3) == expected
    assert toy_index("bm25s", bm25s_backend="numba", n_threads=2).search(queries, k=3) == expected
    assert toy_index("bm25s", bm25s_backend="numpy", n_threads=-1).search(queries, k=3) == expected


# ---------------------------------------------------------------------------------------------- real data
SCIFACT = DATA / "scifact"


@needs_data("scifact")
def test_scifact_ndcg10():
    from ranx import Qrels, Run, evaluate

    from retrieval_lab.data import load_beir

    collection = load_beir(SCIFACT, splits=["test"])
    corpus, topics = collection.corpus, collection.topics("test")
    qrels = {q: {d: g for d, g in docs.items() if g >= 1} for q, docs in collection.qrels["test"].items()}
    assert len(corpus) == 5183 and len(topics) == 300

    index = BM25Index(backend="bm25s")
    index.build(corpus.ids(), [doc.contents() for doc in corpus], show_progress=False)
    hits = index.search(list(topics.values()), k=100, show_progress=False)
    run = {qid: dict(h) for qid, h in zip(topics, hits)}
    ndcg = evaluate(Qrels(qrels), Run(run), "ndcg@10")
    assert ndcg >= 0.67, ndcg  # Pyserini's flat Lucene BM25 (k1=0.9, b=0.4): 0.6789
