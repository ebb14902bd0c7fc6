"""Doc / Corpus / Collection and the BEIR-folder loader: small temp folders and the real collections."""

import json
import warnings
from pathlib import Path

import pytest

from retrieval_lab.data import Collection, CollectionError, Corpus, DataWarning, Doc, load_beir
from retrieval_lab.data.beir import read_queries_jsonl
from tests.conftest import DATA, needs_data


DOCS = [
    {"_id": "d1", "title": "Alpha", "text": "first document"},
    {"_id": "d2", "title": "", "text": "second document"},
    {"_id": "d3", "title": "Gamma", "text": "third"},
]
QUERIES = [{"_id": "q1", "text": "alpha?"}, {"_id": "q2", "text": "second?"}, {"_id": "q3", "text": "unjudged"}]


def write_beir(root: Path, docs=DOCS, queries=QUERIES, qrels=None, runs=None) -> Path:
    """A tiny BEIR folder. qrels: split -> file text (default: train and test with a header)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries), encoding="utf-8")
    if qrels is None:
        qrels = {"train": "query-id\tcorpus-id\tscore\nq1\td1\t1\n",
                 "test": "query-id\tcorpus-id\tscore\nq2\td2\t2\nq2\td3\t0\n"}
    (root / "qrels").mkdir(exist_ok=True)
    for split, text in qrels.items():
        (root / "qrels" / f"{split}.tsv").write_text(text, encoding="utf-8")
    for name, text in (runs or {}).items():
        (root / "runs").mkdir(exist_ok=True)
        (root / "runs" / f"{name}.trec").write_text(text, encoding="utf-8")
    return root


# -- types ------------------------------------------------------------------------------------------------------


def test_doc_contents_omits_empty_title():
    assert Doc("1", "body", "Head").contents() == "Head body"
    assert Doc("1", "body").contents() == "body"
    assert Doc("1", "", "Head").contents() == "Head"


def test_corpus_in_memory_access_and_order():
    corpus = Corpus([Doc("b", "x"), Doc("a", "y", "t")])
    assert len(corpus) == 2 and corpus.ids() == ["b", "a"]
    assert [d.id for d in corpus] == ["b", "a"]
    assert corpus["a"].title == "t" and "a" in corpus and "zz" not in corpus
    with pytest.raises(KeyError, match="'zz'"):
        corpus["zz"]
    ids = corpus.ids()
    ids.append("mutated")
    assert corpus.ids() == ["b", "a"]  # a copy
    # content fingerprint: same docs -> same print; any change -> different
    assert Corpus([Doc("b", "x"), Doc("a", "y", "t")]).fingerprint == corpus.fingerprint
    assert Corpus([Doc("b", "x"), Doc("a", "y", "T")]).fingerprint != corpus.fingerprint
    with pytest.raises(CollectionError, match="duplicate document id 'b'"):
        Corpus([Doc("b", "x"), Doc("b", "y")])


def test_collection_built_in_memory_gets_a_content_fingerprint():
    corpus = Corpus([Doc("d1", "x")])
    c1 = Collection("c", corpus, {"q1": "a", "q2": "b"}, {"test": {"q1": {"d1": 1}}})
    c2 = Collection("c", corpus, {"q1": "a", "q2": "b"}, {"test": {"q1": {"d1": 2}}})
    assert c1.fingerprint and c1.fingerprint != c2.fingerprint
    assert c1.splits == ["test"] and c1.topics("test") == {"q1": "a"} and c1.runs == {}
    with pytest.raises(KeyError, match="no split 'train'"):
        c1.topics("train")
    with pytest.raises(CollectionError, match="no text"):
        Collection("c", corpus, {"q1": "a"}, {"test": {"q9": {"d1": 1}}})


# -- BEIR folders ---------------------------------------------------------------------------------------------


def test_load_beir_small_folder(tmp_path):
    run = "q1 Q0 d1 1 2.5 bm25\nq1 Q0 d2 2 1.5 bm25\n"
    root = write_beir(tmp_path / "tiny", runs={"bm25_top100": run})
    c = load_beir(root)
    assert c.name == "tiny" and len(c.corpus) == 3 and len(c.queries) == 3
    assert c.splits == ["train", "test"]
    assert c.qrels == {"train": {"q1": {"d1": 1}}, "test": {"q2": {"d2": 2, "d3": 0}}}
    assert c.topics("test") == {"q2": "second?"}
    assert c.corpus["d1"].contents() == "Alpha first document"
    assert c.corpus["d2"].contents() == "second document"
    assert c.runs == {"bm25_top100": str(root / "runs" / "bm25_top100.trec")}
    assert c.rel_threshold == 1
    # only the requested split
    only_test = load_beir(root, splits=["test"], rel_threshold=2, name="renamed")
    assert only_test.splits == ["test"] and only_test.rel_threshold == 2 and only_test.name == "renamed"
    assert only_test.fingerprint != c.fingerprint


def test_fingerprint_changes_with_any_input_file(tmp_path):
    root = write_beir(tmp_path / "c", runs={"r": "q1 Q0 d1 1 1.0 t\n"})
    base = load_beir(root).fingerprint
    assert load_beir(root).fingerprint == base  # stable
    edits = [("corpus.jsonl", b"third", b"3rd"), ("queries.jsonl", b"alpha?", b"alpha!"),
             ("qrels/test.tsv", b"d2\t2", b"d2\t1"), ("runs/r.trec", b"1.0", b"2.0")]
    for rel, before, after in edits:
        f = root / rel
        old = f.read_bytes()
        assert before in old
        f.write_bytes(old.replace(before, after))
        assert load_beir(root).fingerprint != base, rel
        f.write_bytes(old)
    assert load_beir(root).fingerprint == base


def test_missing_folder_and_files_name_the_path_and_the_env_var(tmp_path):
    with pytest.raises(CollectionError, match=r"not found: .*nowhere.*RETRIEVAL_LAB_DATA"):
        load_beir(tmp_path / "nowhere")
    root = write_beir(tmp_path / "c")
    (root / "queries.jsonl").unlink()
    with pytest.raises(CollectionError, match=r"queries file not found: .*queries\.jsonl.*RETRIEVAL_LAB_DATA"):
        load_beir(root)
    root = write_beir(tmp_path / "c2")
    with pytest.raises(CollectionError, match=r"split 'dev' not found: .*dev\.tsv.*available splits: \['train', 'test'\]"):
        load_beir(root, splits=["dev"])
    root = write_beir(tmp_path / "c3", qrels={})
    with pytest.raises(CollectionError, match="no qrels files"):
        load_beir(root)


def test_malformed_json_and_missing_id_name_file_and_line(tmp_path):
    root = write_beir(tmp_path / "c")
    with open(root / "corpus.jsonl", "a") as f:
        f.write('{"_id": "d4", "text": "ok"}\n{"_id": "d5", "text": broken}\n')
    with pytest.raises(CollectionError, match=r"corpus\.jsonl:5: malformed JSON"):
        load_beir(root)
    root = write_beir(tmp_path / "c2", docs=DOCS + [{"title": "x", "text": "no id"}])
    with pytest.raises(CollectionError, match=r"corpus\.jsonl:4: document has no _id"):
        load_beir(root)
    root = write_beir(tmp_path / "c3", queries=[{"text": "no id"}])
    with pytest.raises(CollectionError, match=r"queries\.jsonl:1: query has no _id"):
        load_beir(root)


def test_duplicate_ids_name_the_id_and_the_lines(tmp_path):
    root = write_beir(tmp_path / "c", docs=DOCS + [{"_id": "d2", "title": "", "text": "again"}])
    with pytest.raises(CollectionError, match=r"corpus\.jsonl:4: duplicate document id 'd2' \(first on line 2\)"):
        load_beir(root)
    root = write_beir(tmp_path / "c2", queries=QUERIES + [{"_id": "q1", "text": "again"}])
    with pytest.raises(CollectionError, match=r"queries\.jsonl:4: duplicate query id 'q1' \(first on line 1\)"):
        load_beir(root)


def test_unknown_ids_in_qrels_are_counted_and_warned(tmp_path):
    qrels = {"test": "query-id\tcorpus-id\tscore\nq1\td1\t1\nq9\td1\t1\nq8\td2\t1\nq2\tdX\t1\nq2\td2\t1\n"}
    root = write_beir(tmp_path / "c", qrels=qrels)
    with pytest.warns(DataWarning, match=r"test\.tsv: 2 judgment\(s\) name unknown queries \(skipped\); 1 name "
                                         r"documents not in the corpus \(kept"):
        c = load_beir(root, max_unknown_query_share=0.5)
    assert c.qrels["test"] == {"q1": {"d1": 1}, "q2": {"dX": 1, "d2": 1}}
    with pytest.warns(DataWarning, match=r"1 name documents not in the corpus \(skipped\)"):
        c = load_beir(root, unknown_docs="skip", max_unknown_query_share=0.5)
    assert c.qrels["test"] == {"q1": {"d1": 1}, "q2": {"d2": 1}}
    # above the default share of unknown judged queries (0.05), loading stops naming them
    with pytest.raises(CollectionError, match=r"test\.tsv: 2 of the 4 judged queries \(50%.*e\.g\. 'q9'"):
        load_beir(root)


def test_empty_split_is_an_error_naming_the_file(tmp_path):
    root = write_beir(tmp_path / "c", qrels={"test": "query-id\tcorpus-id\tscore\n", "train": "q1\td1\t1\n"})
    with pytest.raises(CollectionError, match=r"test\.tsv: no judgments \(empty split"):
        load_beir(root)
    assert load_beir(root, splits="train").qrels == {"train": {"q1": {"d1": 1}}}


def test_headerless_and_trec_qrels_are_accepted(tmp_path):
    root = write_beir(tmp_path / "c", qrels={"a": "q1\td1\t1\nq2\td2\t2\n", "b": "q1 0 d1 1\nq2 0 d3 0\n"})
    c = load_beir(root)
    assert c.qrels == {"a": {"q1": {"d1": 1}, "q2": {"d2": 2}}, "b": {"q1": {"d1": 1}, "q2": {"d3": 0}}}


def test_stream_reads_crlf_and_bom(tmp_path):
    root = write_beir(tmp_path / "c")
    raw = (root / "queries.jsonl").read_bytes()
    (root / "queries.jsonl").write_bytes(b"\xef\xbb\xbf" + raw.replace(b"\n", b"\r\n"))
    assert read_queries_jsonl(root / "queries.jsonl") == {"q1": "alpha?", "q2": "second?", "q3": "unjudged"}


# -- real collections ----------------------------------------------------------------------------------------


@needs_data("scifact")
def test_scifact_counts_and_corpus_sha256():
    c = load_beir(DATA / "scifact")
    assert len(c.corpus) == 5183 and len(c.queries) == 1109
    assert c.splits == ["train", "test"]
    assert len(c.qrels["train"]) == 809 and len(c.qrels["test"]) == 300
    assert sum(map(len, c.qrels["train"].values())) == 919 and sum(map(len, c.qrels["test"].values())) == 339
    assert not set(c.qrels["train"]) & set(c.qrels["test"])
    assert len(c.topics("test")) == 300
    # the corpus fingerprint is the sha256 of corpus.jsonl as stated in PROVENANCE.md
    assert c.corpus.fingerprint == "ae39e2b331413acd6c58c262e3d2c1bf2b4afb5407ccfa6d06dd3f06e5da1f28"
    assert c.corpus["4983"].title.startswith("Microstructural development of human newborn")
    # every judged document exists
    assert all(d in c.corpus for split in c.qrels.values() for docs in split.values() for d in docs)


@needs_data("trec-dl-2019-passage")
def test_trec_dl_2019_pool_keeps_judgments_outside_the_pool():
    with pytest.warns(DataWarning, match=r"7003 name documents not in the corpus \(kept"):
        c = load_beir(DATA / "trec-dl-2019-passage", rel_threshold=2)
    assert len(c.corpus) == 4297 and len(c.queries) == 43 and c.splits == ["test"]
    assert len(c.topics("test")) == 43
    grades = [g for docs in c.qrels["test"].values() for g in docs.values()]
    assert len(grades) == 9260
    assert {g: grades.count(g) for g in range(4)} == {0: 5158, 1: 1601, 2: 1804, 3: 697}
    assert c.runs == {"bm25_top100": str(DATA / "trec-dl-2019-passage" / "runs" / "bm25_top100.trec")}


CLASSICS = {  # name: (docs, queries, judged queries, judgments)
    "cranfield": (1400, 225, 225, 1837),
    "cisi": (1460, 112, 76, 3114),
    "med": (1033, 30, 30, 696),
    "adi": (82, 35, 35, 170),
}


@pytest.mark.parametrize("name", [pytest.param(name, marks=needs_data(name)) for name in CLASSICS])
def test_cranfield_and_small_classics(name):
    c = load_beir(DATA / name)
    assert (len(c.corpus), len(c.queries), len(c.qrels["test"]),
            sum(map(len, c.qrels["test"].values()))) == CLASSICS[name]


def test_no_warning_when_ids_are_clean(tmp_path):
    root = write_beir(tmp_path / "c")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_beir(root)
