"""evaluate() against hand computation and pytrec_eval (trec_eval), on toy cases and the real TREC DL 2019 run;
tables, metrics files and paired tests."""

import csv
import json
import math
import random

import numpy as np
import pytest
import pytrec_eval
from scipy import stats

from retrieval_lab.evaluation import EvalResult, evaluate, metrics_table, paired_test, write_metrics
from retrieval_lab.evaluation.sweep import seed_spread, summarize
from tests.conftest import DATA, needs_data

DL19 = DATA / "trec-dl-2019-passage"


# ------------------------------------------------------------------------------------------ by hand


QRELS = {"q1": {"d1": 1, "d2": 3, "d3": 0, "d4": 2}, "q2": {"x": 1}}
RUN = {"q1": {"d1": 3.0, "d2": 2.0, "d3": 1.0}, "q3": {"d1": 1.0}}  # q2 not retrieved, q3 not judged


def test_ndcg_at_3_by_hand():
    res = evaluate(QRELS, RUN, ["ndcg@3"])
    dcg = 1 / math.log2(2) + 3 / math.log2(3) + 0 / math.log2(4)  # gains = grades, ranks 1..3
    idcg = 3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)  # ideal: d2 (3), d4 (2), d1 (1)
    assert dcg / idcg == pytest.approx(0.607491518, abs=1e-9)
    assert res.per_query["ndcg@3"]["q1"] == pytest.approx(dcg / idcg, abs=1e-12)


def test_binary_metrics_use_the_threshold_and_ndcg_does_not():
    at1 = evaluate(QRELS, RUN, ["ndcg@3", "mrr@10", "recall@3", "map", "precision@2"], rel_threshold=1)
    at2 = evaluate(QRELS, RUN, ["ndcg@3", "mrr@10", "recall@3", "map", "precision@2"], rel_threshold=2)
    q = "q1"
    assert at1.per_query["ndcg@3"][q] == at2.per_query["ndcg@3"][q]
    assert at1.per_query["mrr@10"][q] == 1.0 and at2.per_query["mrr@10"][q] == 0.5  # d1 has grade 1
    assert at1.per_query["recall@3"][q] == pytest.approx(2 / 3) and at2.per_query["recall@3"][q] == 0.5
    assert at1.per_query["map"][q] == pytest.approx((1 + 1) / 3) and at2.per_query["map"][q] == 0.25
    assert at1.per_query["precision@2"][q] == 1.0 and at2.per_query["precision@2"][q] == 0.5
    # an explicit ranx level is honoured as written
    assert evaluate(QRELS, RUN, ["mrr@10-l2"], rel_threshold=1).per_query["mrr@10-l2"][q] == 0.5


def test_judged_queries_missing_from_the_run_score_zero_and_count_in_the_mean():
    res = evaluate(QRELS, RUN, ["ndcg@3", "mrr@10"])
    assert set(res.per_query["ndcg@3"]) == {"q1", "q2"}  # q3 (not judged) ignored
    assert res.per_query["ndcg@3"]["q2"] == 0.0 and res.per_query["mrr@10"]["q2"] == 0.0
    assert res.aggregate["ndcg@3"] == pytest.approx(res.per_query["ndcg@3"]["q1"] / 2)
    assert res.num_queries == 2
    # an empty ranking is the same as a missing one; nothing retrieved at all gives zeros
    assert evaluate(QRELS, {**RUN, "q2": {}}, ["ndcg@3", "mrr@10"]).aggregate == res.aggregate
    assert evaluate(QRELS, {}, ["ndcg@3", "map"]).aggregate == {"ndcg@3": 0.0, "map": 0.0}
    # a query with judgments but no relevant document counts as 0
    res = evaluate({**QRELS, "q4": {"z": 0}}, {**RUN, "q4": {"z": 1.0}}, ["map"])
    assert res.per_query["map"]["q4"] == 0.0 and res.num_queries == 3


def test_ties_are_broken_as_trec_eval_does():
    qrels = {"q": {"b": 1}}
    run = {"q": {"a": 1.0, "b": 1.0, "c": 1.0, "d": 0.5}}  # trec_eval: c, b, a (doc id descending), d
    ours = evaluate(qrels, run, ["mrr"]).per_query["mrr"]["q"]
    theirs = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(run)["q"]["recip_rank"]
    assert ours == theirs == 0.5


def test_bad_metric_names_are_explained():
    for bad, expected in [
        ("ndgc@10", "unknown metric 'ndgc@10'"),
        ("ndcg_cut_10", "did you mean ndcg@k"),
        ("NDCG@10", "lower case"),
        ("r-precision@10", "drop the @10"),
        ("recall@0", "cutoff must be >= 1"),
        ("bpref", "silently wrong"),
    ]:
        with pytest.raises(ValueError, match="valid metrics|drop|cutoff") as err:
            evaluate(QRELS, RUN, ["map", bad])
        assert expected in str(err.value)
    with pytest.raises(ValueError, match="ndcg@10, mrr@10, map, recall@1000"):
        evaluate(QRELS, RUN, "nope")
    with pytest.raises(ValueError, match="rel_threshold"):
        evaluate(QRELS, RUN, "map", rel_threshold=0)


def test_result_json_round_trip():
    res = evaluate(QRELS, RUN, ["ndcg@3", "map"], rel_threshold=2)
    back = EvalResult.from_json(res.to_json())
    assert back == res
    assert json.loads(res.to_json())["aggregate"]["map"] == res.aggregate["map"]


# --------------------------------------------------------------- random cases against pytrec_eval

PAIRS = {  # ours -> pytrec_eval measure (key in its output)
    "ndcg": ("ndcg", "ndcg"),
    "ndcg@5": ("ndcg_cut.5", "ndcg_cut_5"),
    "map": ("map", "map"),
    "map@5": ("map_cut.5", "map_cut_5"),
    "recall@10": ("recall.10", "recall_10"),
    "precision@5": ("P.5", "P_5"),
    "mrr": ("recip_rank", "recip_rank"),
    "hit_rate@5": ("success.5", "success_5"),
    "r-precision": ("Rprec", "Rprec"),
}


@pytest.mark.parametrize("threshold", [1, 2, 3])
def test_random_graded_runs_with_ties_match_trec_eval(threshold):
    rng = random.Random(threshold)
    qrels, run = {}, {}
    for i in range(40):
        q = f"q{i}"
        docs = [f"d{j}" for j in range(rng.randint(5, 40))]
        qrels[q] = {d: rng.choice([0, 0, 0, 1, 2, 3]) for d in rng.sample(docs, rng.randint(1, len(docs)))}
        if i % 10 == 9:
            continue  # judged, not retrieved
        pool = docs + [f"unjudged{j}" for j in range(10)]
        run[q] = {d: round(rng.random(), 1) for d in rng.sample(pool, rng.randint(1, 15))}  # many ties
    run["not-judged"] = {"d1": 1.0}

    res = evaluate(qrels, run, list(PAIRS), rel_threshold=threshold)
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {m for m, _ in PAIRS.values()}, relevance_level=threshold)
    te = evaluator.evaluate(run)
    assert set(te) == set(qrels) & set(run)
    for ours, (_, key) in PAIRS.items():
        for q in qrels:
            expected = te[q][key] if q in te else 0.0
            assert res.per_query[ours][q] == pytest.approx(expected, abs=1e-9), (ours, q)
        assert res.aggregate[ours] == pytest.approx(np.mean([res.per_query[ours][q] for q in qrels]))


# ------------------------------------------------------------------------ real TREC DL 2019 run


def _read_qrels(path):
    qrels = {}
    with open(path) as f:
        reader = csv.reader(f, delimiter="\t")
        assert next(reader) == ["query-id", "corpus-id", "score"]
        for qid, docid, grade in reader:
            qrels.setdefault(qid, {})[docid] = int(grade)
    return qrels


def _read_run(path):
    run = {}
    with open(path) as f:
        for line in f:
            qid, _, docid, _, score, _ = line.split()
            run.setdefault(qid, {})[docid] = float(score)
    return run


def _cut(run, depth):  # in trec_eval's order: score descending, then doc id descending
    return {q: dict(sorted(d.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)[:depth]) for q, d in run.items()}


@pytest.fixture(scope="module")
def dl19():
    return _read_qrels(DL19 / "qrels" / "test.tsv"), _read_run(DL19 / "runs" / "bm25_top100.trec")


@needs_data("trec-dl-2019-passage")
def test_dl19_bm25_published_figures(dl19):
    qrels, run = dl19
    res = evaluate(qrels, run, rel_threshold=2)
    assert res.num_queries == 43
    assert round(res.aggregate["ndcg@10"], 4) == 0.5058  # Pyserini's published BM25 (default) on DL19
    assert round(res.aggregate["mrr@10"], 4) == 0.7024  # PROVENANCE.md: RR@10 (rel >= 2)
    assert round(res.aggregate["recall@100"], 4) == 0.4910
    assert res.aggregate["recall@1000"] == res.aggregate["recall@100"]  # the run is 100 deep


@needs_data("trec-dl-2019-passage")
def test_dl19_bm25_per_query_matches_pytrec_eval(dl19):
    qrels, run = dl19
    res = evaluate(qrels, run, ["ndcg@10", "map", "recall@100", "mrr@10", "precision@10"], rel_threshold=2)
    measures = {"ndcg_cut.10", "map", "recall.100", "P.10"}
    te = pytrec_eval.RelevanceEvaluator(qrels, measures, relevance_level=2).evaluate(run)
    rr10 = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}, relevance_level=2).evaluate(_cut(run, 10))
    assert set(te) == set(rr10) == set(res.per_query["map"])
    for q in te:
        assert res.per_query["ndcg@10"][q] == pytest.approx(te[q]["ndcg_cut_10"], abs=1e-6)
        assert res.per_query["map"][q] == pytest.approx(te[q]["map"], abs=1e-6)
        assert res.per_query["recall@100"][q] == pytest.approx(te[q]["recall_100"], abs=1e-6)
        assert res.per_query["precision@10"][q] == pytest.approx(te[q]["P_10"], abs=1e-6)
        assert res.per_query["mrr@10"][q] == pytest.approx(rr10[q]["recip_rank"], abs=1e-6)
    # nDCG uses every grade: trec_eval's ndcg ignores relevance_level, and so do we
    te1 = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}, relevance_level=1).evaluate(run)
    assert all(te1[q]["ndcg_cut_10"] == te[q]["ndcg_cut_10"] for q in te)
    # ranx's own "-l2" on nDCG drops grade-1 gains: not the official figure
    assert round(evaluate(qrels, run, ["ndcg@10-l2"]).aggregate["ndcg@10-l2"], 4) != 0.5058


# ----------------------------------------------------------------------------------------- report


ROWS = {"bm25": {"ndcg@10": 0.50583, "map": 0.3}, "bm25>>ce_x@100": {"ndcg@10": 0.7012, "map": 0.3}}


def test_metrics_table_formats():
    md = metrics_table(ROWS, ["ndcg@10", "map"])
    assert md.splitlines() == [
        "| system | ndcg@10 | map |",
        "|---|---:|---:|",
        "| bm25 | 0.5058 | **0.3000** |",
        "| bm25>>ce_x@100 | **0.7012** | **0.3000** |",
    ]
    tex = metrics_table(ROWS, ["ndcg@10", "map"], fmt="latex")
    assert r"bm25>>ce\_x@100 & \textbf{0.7012} & \textbf{0.3000} \\" in tex
    assert tex.startswith(r"\begin{tabular}{lrr}") and tex.endswith(r"\end{tabular}")
    plain = metrics_table({**ROWS, "other": {"map": 0.1}}, ["ndcg@10", "map"], fmt="plain")
    assert "**" not in plain and plain.splitlines()[-1].split() == ["other", "-", "0.1000"]
    with pytest.raises(ValueError, match="fmt"):
        metrics_table(ROWS, ["map"], fmt="html")


def test_write_metrics(tmp_path):
    results = {
        "a": evaluate(QRELS, RUN, ["ndcg@3", "map"]),
        "b": evaluate(QRELS, {"q2": {"x": 1.0}}, ["ndcg@3", "map"]),
    }
    metrics_path, per_query_path = write_metrics(tmp_path / "out", results)
    assert json.loads(metrics_path.read_text()) == {s: r.aggregate for s, r in results.items()}
    rows = list(csv.reader(per_query_path.open(), delimiter="\t"))
    assert rows[0] == ["stage", "metric", "qid", "value"]
    assert len(rows) == 1 + 2 * 2 * 2
    assert ["b", "map", "q2", "1.0"] in rows
    assert float(rows[1][3]) == results["a"].per_query["ndcg@3"]["q1"]  # full precision
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["metrics.json", "per_query.tsv"]  # no temps


def test_paired_test():
    rng = np.random.default_rng(0)
    a = {f"q{i}": float(v) for i, v in enumerate(rng.random(50))}
    b = {q: v + 0.05 + 0.1 * float(rng.standard_normal()) for q, v in a.items()}
    qids = sorted(a)
    assert paired_test(a, b, "t") == pytest.approx(stats.ttest_rel([a[q] for q in qids], [b[q] for q in qids]).pvalue)
    p_rand = paired_test(a, b, "randomization")
    assert p_rand < 0.05 and p_rand == paired_test(b, a, "randomization")  # two-sided, seeded
    assert paired_test(a, a, "t") == paired_test(a, a, "randomization") == 1.0
    # small n: exact enumeration of the 2^n sign flips
    small_a, small_b = {"1": 0.0, "2": 0.0, "3": 0.0}, {"1": 1.0, "2": 1.0, "3": 1.0}
    assert paired_test(small_a, small_b, "randomization") == pytest.approx(2 / 8)
    with pytest.raises(ValueError, match="same queries"):
        paired_test(a, {**b, "extra": 1.0})
    with pytest.raises(ValueError, match="test="):
        paired_test(a, b, "wilcoxon")


# ------------------------------------------------------------------------------------ sweep summaries


def test_seed_spread_is_the_sample_standard_deviation():
    # mean 0.2; squared deviations 0.01 + 0 + 0.01 = 0.02; / (n - 1 = 2) = 0.01; sqrt = 0.1
    # (the population std, / n, would be sqrt(0.02 / 3) = 0.0816)
    assert seed_spread([0.1, 0.2, 0.3]) == pytest.approx(0.1)
    assert seed_spread([0.5, 0.7]) == pytest.approx(math.sqrt(0.02))
    assert seed_spread([0.4]) is None  # one seed: no spread, not 0


def _fake_job(job_dir, overrides, per_query):
    (job_dir / ".hydra").mkdir(parents=True)
    (job_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    lines = ["stage\tmetric\tqid\tvalue"] + [f"rerank\tndcg@10\t{q}\t{v!r}" for q, v in per_query.items()]
    (job_dir / "per_query.tsv").write_text("\n".join(lines) + "\n")
    mean = sum(per_query.values()) / len(per_query)
    (job_dir / "metrics.json").write_text(json.dumps({"bm25": {"ndcg@10": 0.0}, "rerank": {"ndcg@10": mean}}))


def test_summarize_reports_the_sample_std_over_seeds_and_no_spread_for_one_seed(tmp_path):
    for i, (seed, value) in enumerate([(1, 0.1), (2, 0.2), (3, 0.3)]):
        _fake_job(tmp_path / str(i), ["loss=softmax", f"seed={seed}", "logger=none"], {"q1": value, "q2": value})
    _fake_job(tmp_path / "3", ["loss=poly1", "seed=1", "logger=none"], {"q1": 0.4, "q2": 0.6})
    text = summarize(tmp_path)
    assert "| loss=softmax | 0.2000 |" in text and "| loss=poly1 | **0.5000** |" in text  # means over seeds
    assert "sample std over seeds (ddof=1): loss=softmax: ndcg@10 ±0.1000 (3 seeds); " \
           "loss=poly1: ndcg@10 no spread (1 seed)" in text
    assert "0.0816" not in text  # not the population std

