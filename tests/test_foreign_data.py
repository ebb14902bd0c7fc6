"""Foreign data that used to give silently wrong figures (issue 8, "Silently wrong figures", the data cases):
run files naming documents the corpus lacks, qrels whose query ids do not match the topics, a qrels file in a
layout the loader misreads, graded qrels at relevance threshold 1 (and a collection's own settings file), empty
queries and documents. Each case is checked with numbers (hand-computed, or pytrec_eval on the real ADI)."""

import json
import math
import tarfile
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytrec_eval
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from retrieval_lab.config import register
from retrieval_lab.data import CollectionError, DataWarning, load_beir, load_collection, read_qrels, read_trec_run
from retrieval_lab.evaluation import evaluate
from retrieval_lab.retrievers.run_file import RunFileRetriever
from tests.conftest import DATA, ROOT, needs_data

ADI = DATA / "adi"


def write_beir(root: Path, docs, queries, qrels: str, runs: dict | None = None, settings: str | None = None) -> Path:
    """A small BEIR folder: docs [(id, title, text)], queries [(id, text)], qrels/test.tsv text, runs/<name>.trec."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in docs), encoding="utf-8")
    (root / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": i, "text": x}) + "\n" for i, x in queries), encoding="utf-8")
    (root / "qrels").mkdir(exist_ok=True)
    (root / "qrels" / "test.tsv").write_text(qrels, encoding="utf-8")
    for name, text in (runs or {}).items():
        (root / "runs").mkdir(exist_ok=True)
        (root / "runs" / f"{name}.trec").write_text(text, encoding="utf-8")
    if settings is not None:
        (root / "collection.yaml").write_text(settings, encoding="utf-8")
    return root


def run_stage(collection, path=None, default_run=None):
    """The retriever=run stage over ``collection`` (retriever.path=path, dataset.default_run=default_run)."""
    cfg = OmegaConf.create({"name": "run", "path": None if path is None else str(path), "k": 1000})
    ctx = SimpleNamespace(collection=collection, cfg=OmegaConf.create({"dataset": {"default_run": default_run}}))
    return RunFileRetriever(cfg, ctx)


class data_warnings(warnings.catch_warnings):
    """Record the DataWarnings of a block (checked after the figures, so that a wrong figure fails first)."""

    def __init__(self):
        super().__init__(record=True)

    def __enter__(self):
        caught = super().__enter__()
        warnings.simplefilter("always")
        self.messages = _Messages(caught)
        return self.messages


class _Messages:
    def __init__(self, caught):
        self._caught = caught

    def matching(self, pattern: str) -> list[str]:
        import re

        return [str(w.message) for w in self._caught
                if issubclass(w.category, DataWarning) and re.search(pattern, str(w.message))]


def trec_lines(run: dict) -> str:
    return "".join(f"{q} Q0 {d} {r} {s} t\n" for q, docs in run.items()
                   for r, (d, s) in enumerate(sorted(docs.items(), key=lambda kv: -kv[1]), 1))


# ---------------------------------------------------------------- (1) run files naming unknown documents


def test_unknown_documents_of_a_run_stay_in_their_places_by_hand(tmp_path):
    docs = [("d1", "", "apple"), ("d2", "", "pear"), ("d3", "", "plum")]
    root = write_beir(tmp_path / "c", docs, [("q1", "fruit"), ("q2", "more fruit")],
                      "q1\td1\t1\nq2\td2\t1\n")
    c = load_beir(root)
    run_file = tmp_path / "r.trec"
    # q1: an unknown document ranked first, the relevant d1 second; q2: d2 first, an unknown one second
    run_file.write_text("q1 Q0 gone 1 3.0 t\nq1 Q0 d1 2 2.0 t\nq1 Q0 d3 3 1.0 t\n"
                        "q2 Q0 d2 1 3.0 t\nq2 Q0 lost 2 2.0 t\n")
    with data_warnings() as caught:
        run = run_stage(c, run_file).retrieve("test")
    res = evaluate(c.qrels["test"], run, ["ndcg@10", "mrr@10"])
    # q1: the relevant document at rank 2 -> nDCG 1/log2(3), RR 1/2 (not 1.0 as when "gone" was dropped)
    assert res.per_query["ndcg@10"]["q1"] == pytest.approx(1 / math.log2(3), abs=1e-12)
    assert res.per_query["mrr@10"]["q1"] == pytest.approx(0.5)
    assert res.aggregate["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1.0) / 2, abs=1e-12)  # 0.8155
    assert list(run["q1"]) == ["gone", "d1", "d3"] and list(run["q2"]) == ["d2", "lost"]
    assert caught.matching(r"r\.trec: 2 ranked document\(s\) of 2 query\(ies\) are not in the corpus "
                           r"\(2 distinct, e.g. 'gone', 'lost'\); kept in their places")
    # skipping them is still available, and says that it moves documents up
    with pytest.warns(DataWarning, match="skipped: the documents below them moved up"):
        assert list(read_trec_run(run_file, known_docs=c.corpus, unknown_docs="skip")["q1"]) == ["d1", "d3"]


def test_a_run_with_no_document_of_the_corpus_is_an_error(tmp_path):
    root = write_beir(tmp_path / "c", [("d1", "", "apple")], [("q1", "fruit")], "q1\td1\t1\n")
    (tmp_path / "r.trec").write_text("q1 Q0 X1 1 3.0 t\nq1 Q0 X2 2 2.0 t\n")
    with pytest.raises(CollectionError, match=r"r\.trec: none of its 2 ranked documents is in the corpus "
                                              r"\(e.g. 'X1', 'X2'\)"):
        run_stage(load_beir(root), tmp_path / "r.trec").retrieve("test")


@needs_data("adi")
def test_adi_bm25_run_with_three_renamed_documents_scores_as_trec_eval(tmp_path):
    """The issue's case: renaming three top-ranked documents of a BM25 run must not raise nDCG@10."""
    from retrieval_lab.indexes.bm25 import BM25Index

    c = load_beir(ADI)
    qrels = c.qrels["test"]
    index = BM25Index()
    index.build(c.corpus.ids(), [d.contents() for d in c.corpus], show_progress=False)
    topics = c.topics("test")
    run = index.search_run(list(topics), list(topics.values()), k=1000, show_progress=False)
    # rename the top document of the three queries whose nDCG@10 dropping it would raise most (all non-relevant)
    def without_top(docs):
        top = max(docs, key=docs.get)
        return {d: s for d, s in docs.items() if d != top}

    before = evaluate(qrels, run, ["ndcg@10"]).per_query["ndcg@10"]
    after = evaluate(qrels, {q: without_top(d) for q, d in run.items()}, ["ndcg@10"]).per_query["ndcg@10"]
    chosen = sorted(qrels, key=lambda q: (before[q] - after[q], int(q)))[:3]
    assert all(after[q] > before[q] for q in chosen)
    renamed = {q: dict(docs) for q, docs in run.items()}
    for q in chosen:
        top = max(renamed[q], key=renamed[q].get)
        assert qrels[q].get(top, 0) == 0
        renamed[q][f"renamed-{top}"] = renamed[q].pop(top)
    path = tmp_path / "bm25_renamed.trec"
    path.write_text(trec_lines(renamed))

    with data_warnings() as caught:
        ours = evaluate(qrels, run_stage(c, path).retrieve("test"), ["ndcg@10"])
    trec = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut"}).evaluate(renamed)
    trec_mean = sum(v["ndcg_cut_10"] for v in trec.values()) / len(qrels)
    assert ours.aggregate["ndcg@10"] == pytest.approx(trec_mean, abs=1e-9)
    for q in qrels:
        assert ours.per_query["ndcg@10"][q] == pytest.approx(trec[q]["ndcg_cut_10"], abs=1e-9)
    # what dropping the renamed lines gave: a higher, wrong figure
    dropped = {q: {d: s for d, s in docs.items() if d in c.corpus} for q, docs in renamed.items()}
    inflated = evaluate(qrels, dropped, ["ndcg@10"]).aggregate["ndcg@10"]
    assert round(trec_mean, 4) == 0.4802  # trec_eval on the ADI BM25 run (renamed non-relevant docs)
    assert round(inflated, 4) == 0.5003  # what dropping them printed
    assert caught.matching(r"3 ranked document\(s\) of 3 query\(ies\) are not in the corpus")


# ------------------------------------------------------------ (2) qrels query ids that do not match the topics


def _numbered(tmp_path, n_queries: int, qrels_ids: list[str]) -> Path:
    docs = [(f"d{i}", "", f"text {i}") for i in range(1, 4)]
    queries = [(str(i), f"query {i}") for i in range(1, n_queries + 1)]
    qrels = "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\td1\t1\n" for q in qrels_ids)
    return write_beir(tmp_path / "c", docs, queries, qrels)


def test_qrels_with_leading_zeros_stop_with_examples_and_likely_matches(tmp_path):
    root = _numbered(tmp_path, 12, [f"{i:02d}" for i in range(1, 13)])  # '01'..'09' unknown, '10'..'12' match
    with pytest.raises(CollectionError) as err:
        load_collection({"name": "z", "loader": "beir", "path": str(root)})
    msg = str(err.value)
    assert "test.tsv: 9 of the 12 judged queries (75%, 9 judgment(s)) are not in the topics" in msg
    assert "'01' (topics have '1'), '02' (topics have '2')" in msg and "and 4 more" in msg
    assert "dataset.max_unknown_query_share (now 0.05) above 0.75" in msg


def test_share_of_unknown_judged_queries_is_configurable(tmp_path):
    root = _numbered(tmp_path, 25, ["007"] + [str(i) for i in range(1, 25)])  # 1 of 25 unknown: 4%
    with pytest.warns(DataWarning, match=r"1 judgment\(s\) name unknown queries \(skipped\);.* Unknown queries: "
                                         r"e.g. '007' \(topics have '7'\); metrics are over the other 24 judged"):
        c = load_collection({"name": "z", "loader": "beir", "path": str(root)})
    assert len(c.qrels["test"]) == 24
    with pytest.raises(CollectionError, match=r"1 of the 25 judged queries \(4%.*max_unknown_query_share \(now 0\)"):
        load_collection({"name": "z", "loader": "beir", "path": str(root), "max_unknown_query_share": 0.0})
    with pytest.raises(CollectionError, match=r"dataset\.max_unknown_query_share must be a number in \[0, 1\]"):
        load_collection({"name": "z", "loader": "beir", "path": str(root), "max_unknown_query_share": 2})


def test_max_unknown_query_share_is_a_dataset_config_key():
    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["dataset.max_unknown_query_share=0.5"])
    assert cfg.dataset.max_unknown_query_share == 0.5


# ------------------------------------------------------------------ (3) qrels in a layout the loader misreads


def test_smart_qrels_layout_stops_naming_file_and_layout(tmp_path):
    docs = [(str(i), "", f"text {i}") for i in range(1, 50)]
    root = write_beir(tmp_path / "c", docs, [("1", "a"), ("2", "b")], "1 17 0 0\n1 46 0 0\n2 12 0 0\n")
    with pytest.raises(CollectionError) as err:
        load_beir(root)
    msg = str(err.value)
    assert f"{root / 'qrels' / 'test.tsv'}: none of its 3 judged documents is in the corpus" in msg
    assert "read as 'qid iter docid grade' (4 columns): line 1 '1 17 0 0' gave query '1', document '0', grade 0" in msg
    assert "Its column 2 names corpus documents on 3 of 3 lines" in msg and "'qid 0 docid 1'" in msg


def test_qrels_without_any_relevant_judgment_stop(tmp_path):
    root = write_beir(tmp_path / "c", [("d1", "", "x"), ("d2", "", "y")], [("q1", "a")], "q1\td1\t0\nq1\td2\t0\n")
    with pytest.raises(CollectionError, match=r"test\.tsv: none of its 2 judgments has a grade above 0 .*read as "
                                              r"'qid docid grade' \(3 columns\).*expected the TREC qrels layout"):
        load_beir(root)
    f = tmp_path / "alone.txt"  # without a corpus to check against, the grades still tell
    f.write_text("1 17 0 0\n")
    with pytest.raises(CollectionError, match="no relevant document at all"):
        read_qrels(f)


@needs_data("adi")
def test_adi_original_rel_file_is_refused(tmp_path):
    """ADI.REL of the original archive is 'qid docid 0 0.000000', as CACM's qrels.text."""
    with tarfile.open(ADI / "raw" / "adi.tar.gz") as tar:
        rel = tar.extractfile("ADI.REL").read()
    root = tmp_path / "adi"
    (root / "qrels").mkdir(parents=True)
    for name in ("corpus.jsonl", "queries.jsonl"):
        (root / name).symlink_to(ADI / name)
    (root / "qrels" / "test.tsv").write_bytes(rel)
    with pytest.raises(CollectionError, match=r"test\.tsv: none of its 170 judged documents is in the corpus.*"
                                              r"column 2 names corpus documents on 170 of 170 lines"):
        load_beir(root)


# ------------------------------------------------ (4) graded qrels at threshold 1; a collection's own settings


GRADED = "q1\td1\t1\nq1\td2\t3\nq2\td3\t2\nq2\td1\t1\n"
RUN = "q1 Q0 d1 1 3.0 bm25\nq1 Q0 d2 2 2.0 bm25\nq2 Q0 d1 1 3.0 bm25\nq2 Q0 d3 2 2.0 bm25\n"
DOCS3 = [("d1", "", "one"), ("d2", "", "two"), ("d3", "", "three")]


def test_collection_yaml_sets_name_threshold_and_bundled_run(tmp_path):
    root = write_beir(tmp_path / "dl", DOCS3, [("q1", "a"), ("q2", "b")], GRADED, runs={"bm25": RUN},
                      settings="name: mini-dl\nrel_threshold: 2\ndefault_run: bm25\n")
    c = load_collection({"name": "dl", "loader": "beir", "path": str(root)})  # the schema's default threshold 1
    run = {"q1": {"d1": 3.0, "d2": 2.0}, "q2": {"d1": 3.0, "d3": 2.0}}
    # MRR@10 at the collection's threshold 2: first relevant at rank 2 for both queries (1.0 at threshold 1)
    assert evaluate(c.qrels["test"], run, ["mrr@10"], rel_threshold=c.rel_threshold).aggregate["mrr@10"] == 0.5
    assert c.rel_threshold == 2 and c.default_run == "bm25" and c.name == "dl"  # the config's name wins
    assert run_stage(c).retrieve("test") == run  # retriever=run without retriever.path or dataset.default_run
    c = load_collection({"loader": "beir", "path": str(root)})  # no name in the config: the file's
    assert (c.name, c.rel_threshold, c.default_run) == ("mini-dl", 2, "bm25")
    # the config's own threshold (other than the default 1) wins, with a warning
    with pytest.warns(DataWarning, match=r"collection\.yaml sets rel_threshold: 2, but the config sets 3"):
        c = load_collection({"name": "x", "loader": "beir", "path": str(root), "rel_threshold": 3})
    assert c.rel_threshold == 3


def test_collection_yaml_errors_name_file_and_key(tmp_path):
    root = write_beir(tmp_path / "dl", DOCS3, [("q1", "a"), ("q2", "b")], GRADED, runs={"bm25": RUN},
                      settings="name: x\nrel_treshold: 2\n")
    with pytest.raises(CollectionError, match=r"collection\.yaml: unknown key 'rel_treshold'; the keys are name, "
                                              r"rel_threshold, default_run"):
        load_beir(root)
    (root / "collection.yaml").write_text("default_run: bm26\n")
    with pytest.raises(CollectionError, match=r"collection\.yaml: default_run 'bm26' is neither a bundled run"):
        load_beir(root)
    (root / "collection.yaml").write_text("rel_threshold: two\n")
    with pytest.raises(CollectionError, match=r"collection\.yaml: rel_threshold must be an integer, got 'two'"):
        load_beir(root)


def test_graded_qrels_at_threshold_1_print_a_notice(tmp_path):
    qrels = {"q1": {"d1": 1, "d2": 3}, "q2": {"d3": 2, "d1": 1}}
    run = {"q1": {"d1": 3.0, "d2": 2.0}, "q2": {"d1": 3.0, "d3": 2.0}}
    with pytest.warns(DataWarning, match=r"notice: the qrels are graded \(grades up to 3\) and the binary metrics "
                                         r"\(mrr@10\) count every grade >= 1 as relevant"):
        assert evaluate(qrels, run, ["ndcg@10", "mrr@10"]).aggregate["mrr@10"] == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        assert evaluate(qrels, run, ["mrr@10"], rel_threshold=2).aggregate["mrr@10"] == 0.5
        evaluate(qrels, run, ["ndcg@10"])  # graded metrics only: nothing to say
        evaluate({"q1": {"d1": 1}}, run, ["mrr@10"])  # binary qrels


# --------------------------------------------------------------------------- (5) empty queries and documents


def test_empty_query_gets_no_ranking_and_scores_0_with_a_warning(tmp_path):
    docs = [("d1", "Apple", "red apple"), ("d2", "", ""), ("d3", "", "green pear")]
    queries = [("q1", "apple"), ("q2", "   "), ("q3", "pear")]
    root = write_beir(tmp_path / "c", docs, queries, "q1\td1\t1\nq2\td3\t1\nq3\td3\t1\n")
    with data_warnings() as caught:
        c = load_beir(root)
    topics = c.topics("test")  # what every retriever ranks
    # a retriever that, like a dense one, scores every document for every query (term overlap): for a blank query
    # every score ties, and the tie order (d3 first) happened to put q2's relevant document on top
    run = {q: {d.id: float(len(set(text.lower().split()) & set(d.contents().lower().split()))) for d in c.corpus}
           for q, text in topics.items()}
    res = evaluate(c.qrels["test"], run, ["ndcg@10"])
    assert res.per_query["ndcg@10"] == {"q1": 1.0, "q2": 0.0, "q3": 1.0}  # q2: 1.0 from the arbitrary ranking
    assert res.aggregate["ndcg@10"] == pytest.approx(2 / 3)
    assert c.topics("test") == {"q1": "apple", "q3": "pear"} and c.empty_queries("test") == ["q2"]
    assert caught.matching(r"1 document\(s\) have no text and no title .*: 'd2'")
    assert caught.matching(r"split 'test': 1 judged query\(ies\) have an empty text: 'q2'; .*score 0 on every metric")


def test_a_run_file_whose_query_ids_are_written_another_way_stops_with_examples(tmp_path):
    from hydra import compose, initialize_config_dir

    from retrieval_lab.config import register
    from retrieval_lab.context import StageContext
    from retrieval_lab.data import load_collection
    from retrieval_lab.data.runs import write_trec_run
    from retrieval_lab.loggers import NoneLogger
    from retrieval_lab.retrievers.bm25 import BM25Retriever
    from retrieval_lab.retrievers.run_file import RunFileRetriever
    from tests.conftest import ROOT

    register()

    def ctx(*overrides):
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose(config_name="config", overrides=["logger=none", *overrides])
        return StageContext(cfg, load_collection(cfg.dataset), tmp_path / "out", tmp_path / "cache", NoneLogger())

    c = ctx("retriever=bm25")
    run = BM25Retriever(c.cfg.retriever, c).retrieve("test")
    renamed = {qid.lstrip("q0") if qid.startswith("q0") else qid: docs for qid, docs in run.items()}
    assert sum(q not in run for q in renamed) >= 3  # q01 -> 1, ...: ids the topics do not have
    path = tmp_path / "renamed.trec"
    write_trec_run(renamed, path)
    c = ctx("retriever=run", f"retriever.path={path}")
    assert sum(q not in run for q in c.collection.qrels["test"]) <= 2  # BM25 itself leaves few queries unranked
    with pytest.raises(ValueError, match=r"renamed.trec: \d+ of the 40 judged test queries have no ranking.*"
                                         r"e\.g\. '1' \(topics have 'q01'\)|topics have"):
        RunFileRetriever(c.cfg.retriever, c).retrieve("test")
    # a run that merely misses a few queries (no mismatched ids) is evaluated, with a warning naming them
    partial = {q: d for i, (q, d) in enumerate(run.items()) if i > 0}
    write_trec_run(partial, path)
    c = ctx("retriever=run", f"retriever.path={path}")
    missing = sum(not partial.get(q) for q in c.collection.qrels["test"])  # an empty ranking writes no line
    with pytest.warns(UserWarning, match=rf"{missing} of the 40 judged test queries have no ranking"):
        got = RunFileRetriever(c.cfg.retriever, c).retrieve("test")
    assert set(got) == {q for q, d in partial.items() if d}
