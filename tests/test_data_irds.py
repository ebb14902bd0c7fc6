"""ir_datasets loader, offline: the record mapping on ir_datasets' own namedtuples, and datasets registered
in ir_datasets' registry over local files (its LocalDownload mechanism), so nothing is downloaded or faked."""

import uuid

import ir_datasets
import pytest
from ir_datasets.datasets.base import Dataset
from ir_datasets.datasets.beir import BeirTitleDoc
from ir_datasets.formats import GenericDoc, GenericQuery, TrecQrel, TrecQrels, TrecQuery, TsvDocs, TsvQueries
from ir_datasets.util import LocalDownload

from retrieval_lab.data import CollectionError, DataWarning, load_ir_datasets
from retrieval_lab.data.irds import collection_from_records, guess_split


def test_guess_split():
    assert guess_split("beir/scifact/test") == "test"
    assert guess_split("beir/scifact/train") == "train"
    assert guess_split("msmarco-passage/trec-dl-2019/judged") == "test"


def test_mapping_of_ir_datasets_records():
    docs = [BeirTitleDoc("d1", "body one", "Title one"), BeirTitleDoc("d2", "body two", "")]
    queries = {"train": [GenericQuery("q1", "first")], "test": [GenericQuery("q2", "second"), GenericQuery("q3", "x")]}
    qrels = {"train": [TrecQrel("q1", "d1", 1, "0")],
             "test": [TrecQrel("q2", "d2", 2, "0"), TrecQrel("q2", "d1", 0, "0"), TrecQrel("q2", "d7", 1, "0"),
                      TrecQrel("q8", "d1", 1, "0")]}
    with pytest.warns(DataWarning, match=r"1 judgment\(s\) name unknown queries \(skipped\); 1 name documents"):
        c = collection_from_records("toy", docs, queries, qrels)
    assert c.corpus.ids() == ["d1", "d2"] and c.corpus["d1"].contents() == "Title one body one"
    assert c.corpus["d2"].contents() == "body two"
    assert c.queries == {"q1": "first", "q2": "second", "q3": "x"}
    assert c.qrels == {"train": {"q1": {"d1": 1}}, "test": {"q2": {"d2": 2, "d1": 0, "d7": 1}}}
    assert c.splits == ["train", "test"] and c.topics("test") == {"q2": "second"}
    again = collection_from_records("toy", docs, queries, {"train": qrels["train"]})
    changed = collection_from_records("toy", [BeirTitleDoc("d1", "body 1", "Title one"), docs[1]], queries,
                                      {"train": qrels["train"]})
    assert again.fingerprint != changed.fingerprint and again.corpus.fingerprint != changed.corpus.fingerprint


def test_mapping_of_docs_without_title_and_trec_queries():
    c = collection_from_records(
        "t", [GenericDoc("d1", "plain")],
        {"test": [TrecQuery("301", "organized crime", "desc", "narr")]},
        {"test": [TrecQrel("301", "d1", 1, "0")]},
    )
    assert c.corpus["d1"].title == "" and c.queries == {"301": "organized crime"}


def test_mapping_errors():
    with pytest.raises(CollectionError, match="duplicate document id 'd1'"):
        collection_from_records("t", [GenericDoc("d1", "a"), GenericDoc("d1", "b")], {}, {})
    with pytest.raises(CollectionError, match="empty split 'test'"):
        collection_from_records("t", [GenericDoc("d1", "a")], {"test": [GenericQuery("q", "x")]}, {"test": []})
    with pytest.raises(CollectionError, match="duplicate query id 'q'"):
        collection_from_records("t", [GenericDoc("d1", "a")],
                                {"test": [GenericQuery("q", "x"), GenericQuery("q", "y")]}, {})


def test_unknown_id_names_it_and_suggests_close_ones():
    with pytest.raises(CollectionError, match=r"unknown ir_datasets id 'beir/scifcat/test'.*'beir/scifact/test'"):
        load_ir_datasets("beir/scifcat/test")
    with pytest.raises(CollectionError, match="needs a dataset_id or a splits mapping"):
        load_ir_datasets()


def _register_local(tmp_path, qrels_text, docs_file="docs.tsv"):
    (tmp_path / "docs.tsv").write_text("d1\thello world\nd2\tsecond doc\nd3\tthird\n")
    (tmp_path / "queries.tsv").write_text("q1\thello\nq2\tsecond\n")
    (tmp_path / "qrels.txt").write_text(qrels_text)
    dataset_id = f"retrieval-lab-test/{uuid.uuid4().hex}/test"
    ir_datasets.registry.register(dataset_id, Dataset(
        TsvDocs(LocalDownload(tmp_path / docs_file)),
        TsvQueries(LocalDownload(tmp_path / "queries.tsv")),
        TrecQrels(LocalDownload(tmp_path / "qrels.txt"), {0: "not", 1: "relevant", 2: "highly"}),
    ))
    return dataset_id


def test_load_through_the_ir_datasets_registry(tmp_path):
    dataset_id = _register_local(tmp_path, "q1 0 d1 2\nq1 0 d3 0\nq2 0 d2 1\n")
    c = load_ir_datasets(dataset_id, name="local", rel_threshold=2)
    assert c.name == "local" and c.rel_threshold == 2 and c.splits == ["test"]
    assert c.corpus.ids() == ["d1", "d2", "d3"] and c.corpus["d2"].text == "second doc"
    assert c.qrels == {"test": {"q1": {"d1": 2, "d3": 0}, "q2": {"d2": 1}}}
    # split names come from a mapping; both splits share the documents
    c2 = load_ir_datasets(splits={"dev": dataset_id, "test": dataset_id})
    assert c2.splits == ["dev", "test"] and c2.qrels["dev"] == c2.qrels["test"] == c.qrels["test"]


def test_ir_datasets_failures_become_collection_errors(tmp_path):
    dataset_id = _register_local(tmp_path, "q1 0 d1 1\n", docs_file="missing-docs.tsv")
    with pytest.raises(CollectionError, match=rf"ir_datasets could not provide '{dataset_id}'.*RETRIEVAL_LAB_DATA"):
        load_ir_datasets(dataset_id)
