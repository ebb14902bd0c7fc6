"""TREC run files: read, write (atomic), cut, ranked."""

import os
import re

import pytest

from retrieval_lab.data import CollectionError, DataWarning, cut, ranked, read_trec_run, write_trec_run
from tests.conftest import DATA, needs_data

DL19 = DATA / "trec-dl-2019-passage"


def test_ranked_sorts_by_score_then_docid_descending_like_trec_eval():
    assert ranked({"b": 1.0, "a": 1.0, "c": 3.0, "d": -2}) == [("c", 3.0), ("b", 1.0), ("a", 1.0), ("d", -2.0)]
    assert ranked({}) == []
    with pytest.raises(ValueError, match="'x' is NaN"):
        ranked({"x": float("nan")})


def test_cut_keeps_top_depth_per_query():
    run = {"q2": {"a": 0.1, "b": 0.9, "c": 0.5}, "q1": {"z": 1.0}}
    assert cut(run, 2) == {"q2": {"b": 0.9, "c": 0.5}, "q1": {"z": 1.0}}
    assert list(cut(run, 2)) == ["q2", "q1"]
    assert run["q2"] == {"a": 0.1, "b": 0.9, "c": 0.5}  # not modified
    with pytest.raises(ValueError, match="positive"):
        cut(run, 0)


def test_write_then_read_round_trips(tmp_path):
    run = {"q2": {"d3": 0.5, "d1": 0.5, "d2": 2.0}, "q1": {"d9": -1.25, "d8": 1e-12}}
    path = write_trec_run(run, tmp_path / "out" / "run.trec", tag="mine")
    lines = path.read_text().splitlines()
    assert lines == [
        "q2 Q0 d2 1 2.0 mine",
        "q2 Q0 d3 2 0.5 mine",  # tie broken by docid, descending (trec_eval order)
        "q2 Q0 d1 3 0.5 mine",
        "q1 Q0 d8 1 1e-12 mine",
        "q1 Q0 d9 2 -1.25 mine",
    ]
    assert read_trec_run(path) == run
    assert sorted(os.listdir(tmp_path / "out")) == ["run.trec"]  # no temporary left


def test_write_is_atomic_on_failure(tmp_path):
    target = tmp_path / "run.trec"
    target.write_text("old content\n")
    with pytest.raises(ValueError, match="whitespace"):
        write_trec_run({"q1": {"a": 1.0}, "q2": {"bad id": 1.0}}, target, tag="t")
    assert target.read_text() == "old content\n"
    assert os.listdir(tmp_path) == ["run.trec"]
    with pytest.raises(ValueError, match="tag"):
        write_trec_run({"q1": {"a": 1.0}}, target, tag="two words")


def test_malformed_run_lines_name_file_and_line(tmp_path):
    f = tmp_path / "bad.trec"
    f.write_text("q1 Q0 d1 1 2.0 t\nq1 Q0 d2 2 1.0\n")
    with pytest.raises(CollectionError, match=r"bad\.trec:2: expected 6 columns"):
        read_trec_run(f)
    f.write_text("q1 Q0 d1 1 2.0 t\nq1 Q0 d2 2 high t\n")
    with pytest.raises(CollectionError, match=r"bad\.trec:2: rank must be an integer and score a number"):
        read_trec_run(f)
    f.write_text("q1 Q0 d1 1 2.0 t\nq1 Q0 d1 2 1.0 t\n")
    with pytest.raises(CollectionError, match=r"bad\.trec:2: document 'd1' appears twice for query 'q1'"):
        read_trec_run(f)
    with pytest.raises(CollectionError, match=r"run file not found: .*missing\.trec"):
        read_trec_run(tmp_path / "missing.trec")


def test_unknown_queries_are_skipped_and_unknown_docs_kept_with_counts(tmp_path):
    f = tmp_path / "r.trec"
    f.write_text("q1 Q0 d1 1 3 t\nq1 Q0 dX 2 2 t\nq9 Q0 d1 1 5 t\nq9 Q0 d2 2 4 t\nq1 Q0 d2 3 1 t\n")
    with pytest.warns(DataWarning) as caught:
        run = read_trec_run(f, known_queries={"q1": "text"}, known_docs={"d1", "d2"})
    assert run == {"q1": {"d1": 3.0, "dX": 2.0, "d2": 1.0}}  # dX keeps its place (evaluated as given)
    messages = [str(w.message) for w in caught]
    assert any(re.search(r"r\.trec: skipped 2 run line\(s\) naming queries not in the topics", m) for m in messages)
    assert any(re.search(r"r\.trec: 1 ranked document\(s\) of 1 query\(ies\) are not in the corpus \(1 distinct, "
                         r"e\.g\. 'dX'\); kept in their places", m) for m in messages)
    with pytest.warns(DataWarning, match=r"skipped: the documents below them moved up"):
        assert read_trec_run(f, known_queries={"q1"}, known_docs={"d1", "d2"}, unknown_docs="skip") == {
            "q1": {"d1": 3.0, "d2": 1.0}}


@needs_data("trec-dl-2019-passage")
def test_bm25_top100_run_reads_and_rewrites_byte_for_byte(tmp_path):
    src = DL19 / "runs" / "bm25_top100.trec"
    run = read_trec_run(src)
    assert len(run) == 43 and all(len(docs) == 100 for docs in run.values())
    assert run["264014"]["5611210"] == 15.780599594116211
    out = write_trec_run(run, tmp_path / "bm25.trec", tag="bm25-pyserini-default")
    assert out.read_bytes() == src.read_bytes()
    assert read_trec_run(out) == run
    top10 = cut(run, 10)
    assert sum(map(len, top10.values())) == 430
    assert list(top10["264014"]) == [d for d, _ in ranked(run["264014"])[:10]]
