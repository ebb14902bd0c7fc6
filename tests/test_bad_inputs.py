"""Fuzz list of bad inputs (issue 8): files, configs, checkpoints and run files that a user gets wrong.

Each row builds one bad input in ``tmp_path`` and feeds it to the check that guards it (called directly: fast; three
rows go through ``python run.py``). A row expects either an error whose message names the file, line or key and says
what is wrong, or the correct figure (with the notice that explains it): never a silently wrong figure.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

from retrieval_lab.config import ConfigError, register, validate_config
from retrieval_lab.data import CollectionError, load_collection, read_qrels, read_topics
from retrieval_lab.data import read_trec_run
from retrieval_lab.data.trec import read_corpus
from retrieval_lab.models import BackboneError, FamilyMismatchError
from tests.conftest import ROOT, TINY_BERT, TINY_T5

register()


@dataclass(frozen=True)
class Raises:
    error: type[BaseException]
    match: str  # regex searched in the message


@dataclass(frozen=True)
class Figure:
    value: object  # what the call must return (floats compared to 1e-6)
    notice: str | None = None  # regex of a warning that must accompany it


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path


def compose(*overrides: str):
    from hydra import compose as hydra_compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))


def run_py(tmp: Path, *args: str) -> str:
    """``python run.py ARGS`` in a fresh folder; must exit 2 with one ``error:`` line (no traceback on stderr)."""
    result = subprocess.run(
        [sys.executable, "run.py", *args, "logger=none", "baseline=none", f"hydra.run.dir={tmp / 'out'}",
         f"cache_dir={tmp / 'cache'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    return result.stderr


def trec_files(tmp: Path, corpus: str = "d1\tcats and dogs\nd2\tfish\n", topics: str = "1\tcats\n2\tfish\n",
               qrels: str = "1 0 d1 1\n2 0 d2 1\n", corpus_name: str = "corpus.tsv") -> dict:
    return {"name": "bad", "loader": "trec", "path": str(write(tmp, corpus_name, corpus)),
            "topics": str(write(tmp, "topics.tsv", topics)), "qrels": str(write(tmp, "qrels.txt", qrels))}


def classifier_folder(tmp: Path) -> Path:
    from transformers import AutoConfig, AutoTokenizer, BertForSequenceClassification

    folder = tmp / "hub-cross-encoder"
    BertForSequenceClassification(AutoConfig.from_pretrained(TINY_BERT, num_labels=1)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(TINY_BERT).save_pretrained(folder)
    return folder


def saved_bm25(tmp: Path) -> Path:
    from retrieval_lab.indexes import BM25Index

    index = BM25Index(backend="rank_bm25")
    index.build(["d1", "d2", "d3"], ["cats and dogs", "fish", "birds"], show_progress=False)
    index.save(tmp / "bm25")
    return tmp / "bm25"


# -- the rows ---------------------------------------------------------------------------------------------------
# Each: a function of tmp_path that builds the input and runs the check, and what it must give.


def corpus_garbage(tmp):
    return read_corpus(write(tmp, "corpus.dat", "just some words\nmore words\n"))


def corpus_sgml_unclosed(tmp):
    return read_corpus(write(tmp, "doc-text.trec", "<DOC>\n<DOCNO>1</DOCNO>\nfirst\n</DOC>\n<DOC>\n<DOCNO>2</DOCNO>\n"))


def corpus_sgml_text(tmp):
    corpus = read_corpus(write(tmp, "doc-text.trec",
                               "<DOC>\n<DOCNO> AP-1 </DOCNO>\n<HEAD>Cats &amp; dogs</HEAD>\n<TEXT>\n  live\n  together"
                               "\n</TEXT>\n</DOC>\n"))
    return [(d.id, d.title, d.text) for d in corpus]


def corpus_jsonl_no_id(tmp):
    return read_corpus(write(tmp, "corpus.jsonl", '{"_id": "d1", "text": "a"}\n{"title": "t", "text": "b"}\n'))


def corpus_duplicate_id(tmp):
    return read_corpus(write(tmp, "corpus.tsv", "d1\ta\nd2\tb\nd1\tc\n"))


def topics_without_tab(tmp):
    return read_topics(write(tmp, "topics.tsv", "1\tcats\n2 fish\n"))


def qrels_cacm_layout(tmp):  # SMART/CACM 'qid docid 0 0', read as 'qid iter docid grade'
    return read_qrels(write(tmp, "qrels.text", "01 1410 0 0\n01 1572 0 0\n"), known_docs={"1410", "1572"})


def qrels_leading_zeros(tmp):
    return read_qrels(write(tmp, "qrels.txt", "01 0 d1 1\n02 0 d2 1\n3 0 d1 1\n"), known_queries={"1", "2", "3"})


def qrels_grade_not_integer(tmp):
    return read_qrels(write(tmp, "qrels.txt", "1 0 d1 1\n1 0 d2 high\n"))


def collection_corpus_missing(tmp):
    cfg = trec_files(tmp)
    cfg["path"] = str(tmp / "nope.tsv")
    return load_collection(cfg)


def collection_unknown_loader(tmp):
    return load_collection({"name": "bad", "loader": "trek"})


def collection_bad_share(tmp):
    return load_collection({**trec_files(tmp), "max_unknown_query_share": 2})


def collection_blank_query(tmp):  # an empty query gets no ranking: left out of the topics, named in a warning
    collection = load_collection(trec_files(tmp, topics="1\tcats\n2\t  \n"))
    return sorted(collection.topics("test"))


def run_five_columns(tmp):
    return read_trec_run(write(tmp, "run.trec", "1 Q0 d1 1 2.5\n"))


def run_nan_score(tmp):
    return read_trec_run(write(tmp, "run.trec", "1 Q0 d1 1 2.5 t\n1 Q0 d2 2 nan t\n"))


def run_repeated_doc(tmp):
    return read_trec_run(write(tmp, "run.trec", "1 Q0 d1 1 2.5 t\n1 Q0 d1 2 1.0 t\n"))


def run_other_collection(tmp):
    return read_trec_run(write(tmp, "run.trec", "1 Q0 X1 1 2 t\n1 Q0 X2 2 1 t\n"), known_docs={"d1", "d2"})


def run_unknown_doc_kept_in_place(tmp):  # nDCG@10 of the ranking as given: the relevant d1 stays at rank 2
    from retrieval_lab.evaluation.metrics import evaluate

    run = read_trec_run(write(tmp, "run.trec", "1 Q0 renamed 1 2 t\n1 Q0 d1 2 1 t\n"), known_docs={"d1", "d2"})
    return evaluate({"1": {"d1": 1}}, run, ["ndcg@10"]).aggregate["ndcg@10"]


def graded_qrels_at_threshold_1(tmp):  # MRR@10 at threshold 1 is correct for that threshold, with a notice
    from retrieval_lab.evaluation.metrics import evaluate

    return evaluate({"1": {"a": 1, "b": 3}}, {"1": {"a": 2.0, "b": 1.0}}, ["mrr@10"]).aggregate["mrr@10"]


def config_unknown_key(tmp):
    return validate_config(compose("+retriever.k2=3"))


def config_k_zero(tmp):
    return validate_config(compose("retriever=bm25", "retriever.k=0"))


def config_bm25_b(tmp):
    return validate_config(compose("retriever=bm25", "retriever.b=1.5"))


def config_resume_missing(tmp):
    return validate_config(compose("retriever.train.enabled=true", f"retriever.train.resume_from={tmp}/last.ckpt"))


def checkpoint_classifier_as_retriever(tmp):
    from retrieval_lab.models.registry import load_family

    return load_family(classifier_folder(tmp), "retriever", family="biencoder")


def checkpoint_t5_as_cross_encoder(tmp):
    from retrieval_lab.models.registry import load_family

    return load_family(TINY_T5, "reranker", family="cross_encoder")


def checkpoint_family_file_tampered(tmp):
    from retrieval_lab.models.registry import load_family

    folder = tmp / "ckpt"
    folder.mkdir()
    write(folder, "retrieval_lab.json", json.dumps({"settings": {}}))
    return load_family(folder, "retriever", family="biencoder")


def checkpoint_unknown_family(tmp):
    from retrieval_lab.models.registry import load_family

    folder = tmp / "ckpt"
    folder.mkdir()
    write(folder, "retrieval_lab.json", json.dumps({"family": "splade", "settings": {}}))
    return load_family(folder, "retriever", family="biencoder")


def checkpoint_path_not_a_folder(tmp):
    from retrieval_lab.models.registry import load_family

    return load_family("./no/such/model", "reranker", family="cross_encoder")


def checkpoint_cross_encoder_as_retriever(tmp):
    from retrieval_lab.models import CrossEncoder
    from retrieval_lab.models.registry import load_family

    CrossEncoder.from_pretrained(TINY_BERT).save_pretrained(tmp / "ce")
    return load_family(tmp / "ce", "retriever", family="biencoder")


def faiss_too_many_lists(tmp):
    import numpy as np

    from retrieval_lab.indexes.faiss_index import FaissIndex

    return FaissIndex("IVF64,Flat").build(np.random.default_rng(0).random((10, 8), dtype=np.float32),
                                          [f"d{i}" for i in range(10)])


def faiss_unknown_factory(tmp):
    import numpy as np

    from retrieval_lab.indexes.faiss_index import FaissIndex

    return FaissIndex("Nonsense12").build(np.ones((4, 8), dtype=np.float32), ["a", "b", "c", "d"])


def bm25_doc_ids_tampered(tmp):
    from retrieval_lab.indexes import BM25Index

    folder = saved_bm25(tmp)
    write(folder, "doc_ids.json", json.dumps(["d1", "d2", "d3", "d4"]))
    return BM25Index.load(folder)


def bm25_pickled_v1(tmp):
    from retrieval_lab.indexes import BM25Index

    folder = saved_bm25(tmp)
    meta = json.loads((folder / "meta.json").read_text())
    write(folder, "meta.json", json.dumps({**meta, "format_version": 1}))
    return BM25Index.load(folder)


def run_py_unknown_key(tmp):
    return run_py(tmp, "retriever=bm25", "+retriever.k2=3")


def run_py_garbage_corpus(tmp):
    files = trec_files(tmp, corpus="just some words\n", corpus_name="corpus.dat")
    return run_py(tmp, "retriever=bm25", "dataset.name=bad", "dataset.loader=trec", f"dataset.path={files['path']}",
                  f"dataset.topics={files['topics']}", f"dataset.qrels={files['qrels']}")


def run_py_run_without_file(tmp):
    return run_py(tmp, "retriever=run")


ROWS = [
    # files: corpus, topics, qrels, collections
    (corpus_garbage, Raises(CollectionError, r"corpus\.dat:1: expected 'docid<TAB>text', got 'just some words' "
                                             r"\(read as TSV\)\. Corpus formats read: JSONL .*TSV .*TREC SGML")),
    (corpus_sgml_unclosed, Raises(CollectionError, r"doc-text\.trec:5: <DOC> is never closed")),
    (corpus_sgml_text, Figure([("AP-1", "Cats & dogs", "live together")])),
    (corpus_jsonl_no_id, Raises(CollectionError, r"corpus\.jsonl:2: document has no _id / id / docid / doc_id field")),
    (corpus_duplicate_id, Raises(CollectionError, r"corpus\.tsv:3: duplicate document id 'd1' \(first on line 1\)")),
    (topics_without_tab, Raises(CollectionError, r"topics\.tsv:2: expected 'qid<TAB>text', got '2 fish'")),
    (qrels_cacm_layout, Raises(CollectionError, r"qrels\.text: none of its 2 judged documents is in the corpus.*"
                                                r"line 1 '01 1410 0 0' gave query '01', document '0'.*SMART/CACM")),
    (qrels_leading_zeros, Raises(CollectionError, r"qrels\.txt: 2 of the 3 judged queries .*'01' \(topics have '1'\), "
                                                  r"'02' \(topics have '2'\).*dataset\.max_unknown_query_share")),
    (qrels_grade_not_integer, Raises(CollectionError, r"qrels\.txt:2: relevance grade must be an integer, got 'high'")),
    (collection_corpus_missing, Raises(CollectionError, r"corpus file not found: .*nope\.tsv")),
    (collection_unknown_loader, Raises(CollectionError, r"dataset 'bad': unknown loader 'trek'; choose one of")),
    (collection_bad_share, Raises(CollectionError, r"dataset\.max_unknown_query_share must be a number in \[0, 1\], "
                                                   r"got 2")),
    (collection_blank_query, Figure(["1"], notice=r"split 'test': 1 judged query\(ies\) have an empty text: '2'")),
    # run files
    (run_five_columns, Raises(CollectionError, r"run\.trec:1: expected 6 columns 'qid Q0 docid rank score tag', "
                                               r"got 5")),
    (run_nan_score, Raises(CollectionError, r"run\.trec:2: score is NaN")),
    (run_repeated_doc, Raises(CollectionError, r"run\.trec:2: document 'd1' appears twice for query '1'")),
    (run_other_collection, Raises(CollectionError, r"run\.trec: none of its 2 ranked documents is in the corpus")),
    (run_unknown_doc_kept_in_place, Figure(1 / math.log2(3), notice=r"run\.trec: 1 ranked document\(s\) of 1 "
                                                                     r"query\(ies\) are not in the corpus.*'renamed'"
                                                                     r".*kept in their places")),
    (graded_qrels_at_threshold_1, Figure(1.0, notice=r"notice: the qrels are graded \(grades up to 3\).*mrr@10.*"
                                                     r"dataset\.rel_threshold")),
    # configs
    (config_unknown_key, Raises(ConfigError, r"unknown key `retriever\.k2`.*did you mean `retriever\.k`\?")),
    (config_k_zero, Raises(ConfigError, r"`retriever\.k=0`: must be >= 1")),
    (config_bm25_b, Raises(ConfigError, r"`retriever\.b=1\.5`: BM25's b must be in \[0, 1\]")),
    (config_resume_missing, Raises(ConfigError, r"`retriever\.train\.resume_from=.*last\.ckpt`: does not exist")),
    # checkpoints
    (checkpoint_classifier_as_retriever, Raises(BackboneError, r"hub-cross-encoder' is a BertForSequenceClassification "
                                                               r"\(a trained classifier head.*reranker=cross_encoder")),
    (checkpoint_t5_as_cross_encoder, Raises(BackboneError, r"tiny-t5' is a T5ForConditionalGeneration \(an "
                                                           r"encoder-decoder, model_type 't5'\)")),
    (checkpoint_cross_encoder_as_retriever, Raises(FamilyMismatchError, r"ce' is a 'cross_encoder' checkpoint, but the "
                                                                        r"config asks for a 'biencoder' retriever")),
    (checkpoint_family_file_tampered, Raises(BackboneError, r"retrieval_lab\.json is not a retrieval-lab model file "
                                                            r"\(no 'family' key\)")),
    (checkpoint_unknown_family, Raises(BackboneError, r"ckpt' was saved by family 'splade', which this version does "
                                                      r"not know")),
    (checkpoint_path_not_a_folder, Raises(BackboneError, r"backbone './no/such/model' looks like a local path but is "
                                                         r"not a folder")),
    # indexes
    (faiss_too_many_lists, Raises(ValueError, r"FAISS factory 'IVF64,Flat' asks for 64 IVF lists but only 10 vectors")),
    (faiss_unknown_factory, Raises(ValueError, r"faiss cannot build index factory 'Nonsense12' for dim 8")),
    (bm25_doc_ids_tampered, Raises(ValueError, r"bm25: doc_ids\.json has 4 ids, meta\.json says 3")),
    (bm25_pickled_v1, Raises(ValueError, r"bm25: a rank_bm25 index stored with pickle \(format v1\) is not loaded")),
    # the whole command: one line on stderr, exit status 2, no traceback
    (run_py_unknown_key, Figure(None, notice=r"^error: config error:\n  - unknown key `retriever\.k2`")),
    (run_py_garbage_corpus, Figure(None, notice=r"^error: .*corpus\.dat:1: expected 'docid<TAB>text'.*Corpus formats "
                                                r"read.*\(traceback in .*run\.log\)")),
    (run_py_run_without_file, Figure(None, notice=r"^error: retriever=run needs a TREC run file: set retriever\.path="
                                                  r"<file>, or dataset\.default_run=<name>")),
]


def test_the_list_is_long_enough():
    assert len(ROWS) >= 20 and len({f.__name__ for f, _ in ROWS}) == len(ROWS)
    assert sum(f.__name__.startswith("run_py") for f, _ in ROWS) <= 3  # each costs a process start


@pytest.mark.parametrize("make, expect", ROWS, ids=[f.__name__ for f, _ in ROWS])
def test_bad_input(make, expect, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if isinstance(expect, Raises):
            with pytest.raises(expect.error, match=expect.match):
                make(tmp_path)
            return
        got = make(tmp_path)
    if make.__name__.startswith("run_py"):  # the row's "figure" is the command's stderr
        assert re.search(expect.notice, got, re.MULTILINE | re.DOTALL), got[-2000:]
        return
    assert got == (pytest.approx(expect.value, abs=1e-6) if isinstance(expect.value, float) else expect.value)
    if expect.notice:
        messages = [str(w.message) for w in caught]
        assert any(re.search(expect.notice, m, re.DOTALL) for m in messages), messages
