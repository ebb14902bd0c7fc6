"""load_collection(cfg): loader choice, RETRIEVAL_LAB_DATA lookup, ir_datasets fallback, clear errors."""

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import ir_datasets
import pytest
from ir_datasets.datasets.base import Dataset
from ir_datasets.formats import TrecQrels, TsvDocs, TsvQueries
from ir_datasets.util import LocalDownload
from omegaconf import OmegaConf

import retrieval_lab.data as data
from retrieval_lab.data import CollectionError, load_collection
from tests.conftest import DATA, data_decision, data_root, needs_data


@dataclass
class DatasetCfg:
    name: str
    loader: str = "beir"
    path: str | None = None
    local_dir: str | None = None
    ir_datasets_id: str | None = None
    ir_datasets_splits: dict | None = None
    rel_threshold: int = 1
    splits: list | None = None


def write_beir(root: Path, qrels=None) -> Path:
    root.mkdir(parents=True)
    docs = [{"_id": "d1", "title": "T", "text": "one"}, {"_id": "d2", "title": "", "text": "two"}]
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (root / "queries.jsonl").write_text('{"_id": "q1", "text": "one?"}\n{"_id": "q2", "text": "two?"}\n')
    (root / "qrels").mkdir()
    for split, text in (qrels or {"train": "q1\td1\t1\n", "test": "q2\td2\t2\n"}).items():
        (root / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + text)
    return root


def test_beir_by_local_dir_under_the_data_env(tmp_path, monkeypatch):
    write_beir(tmp_path / "mini")
    monkeypatch.setenv("RETRIEVAL_LAB_DATA", str(tmp_path))
    c = load_collection(DatasetCfg(name="mini-ds", local_dir="mini", rel_threshold=2, splits=["test"]))
    assert (c.name, c.rel_threshold, c.splits, len(c.corpus)) == ("mini-ds", 2, ["test"], 2)
    assert c.qrels == {"test": {"q2": {"d2": 2}}}


def test_omegaconf_cfg_in_struct_mode_with_missing_optional_fields(tmp_path):
    root = write_beir(tmp_path / "mini")
    cfg = OmegaConf.create({"name": "mini", "loader": "beir", "path": str(root), "splits": ["train", "test"]})
    OmegaConf.set_struct(cfg, True)
    c = load_collection(cfg)
    assert c.splits == ["train", "test"] and c.rel_threshold == 1 and c.queries == {"q1": "one?", "q2": "two?"}


def test_missing_folder_says_what_was_looked_for_and_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("RETRIEVAL_LAB_DATA", raising=False)
    with pytest.raises(CollectionError, match=r"\$RETRIEVAL_LAB_DATA/scifact \(RETRIEVAL_LAB_DATA is not set\).*export RETRIEVAL_LAB_DATA"):
        load_collection(DatasetCfg(name="scifact", local_dir="scifact"))
    monkeypatch.setenv("RETRIEVAL_LAB_DATA", str(tmp_path))
    with pytest.raises(CollectionError, match=rf"folder not found: {tmp_path}/scifact \(RETRIEVAL_LAB_DATA={tmp_path}\)"):
        load_collection(DatasetCfg(name="scifact", local_dir="scifact"))
    with pytest.raises(CollectionError, match=r"BEIR collection folder not found: .*nowhere.*RETRIEVAL_LAB_DATA"):
        load_collection(DatasetCfg(name="x", path=str(tmp_path / "nowhere")))
    with pytest.raises(CollectionError, match=r"unknown loader 'csv'"):
        load_collection(DatasetCfg(name="x", loader="csv"))


def test_falls_back_to_ir_datasets_when_the_local_folder_is_absent(tmp_path, monkeypatch):
    (tmp_path / "docs.tsv").write_text("d1\tfrom ir_datasets\n")
    (tmp_path / "queries.tsv").write_text("q1\tq\n")
    (tmp_path / "qrels.txt").write_text("q1 0 d1 1\n")
    dataset_id = f"retrieval-lab-test/{uuid.uuid4().hex}/test"
    ir_datasets.registry.register(dataset_id, Dataset(
        TsvDocs(LocalDownload(tmp_path / "docs.tsv")), TsvQueries(LocalDownload(tmp_path / "queries.tsv")),
        TrecQrels(LocalDownload(tmp_path / "qrels.txt"), {1: "rel"})))
    monkeypatch.setenv("RETRIEVAL_LAB_DATA", str(tmp_path / "empty"))
    cfg = DatasetCfg(name="fb", local_dir="fb", ir_datasets_splits={"test": dataset_id})
    c = load_collection(cfg)
    assert c.corpus["d1"].text == "from ir_datasets" and c.qrels == {"test": {"q1": {"d1": 1}}}
    # once the local copy exists it wins
    write_beir(tmp_path / "empty" / "fb")
    assert len(load_collection(cfg).corpus) == 2
    # when both the folder and ir_datasets fail, the error names the folder and ir_datasets' failure
    (tmp_path / "docs.tsv").unlink()
    with pytest.raises(CollectionError, match=r"local folder not found: .*empty/gone \(RETRIEVAL_LAB_DATA=.*\); "
                                              r"the ir_datasets fallback failed too: ir_datasets could not provide"):
        load_collection(DatasetCfg(name="fb", local_dir="gone", ir_datasets_splits={"test": dataset_id}))
    with pytest.raises(CollectionError, match=r"splits \['dev'\] have no entry in ir_datasets_splits"):
        load_collection(DatasetCfg(name="fb", loader="ir_datasets", ir_datasets_splits={"test": dataset_id},
                                   splits=["dev"]))


def test_embedded_loader_reads_the_packaged_folder(tmp_path, monkeypatch):
    write_beir(tmp_path / "toy")
    monkeypatch.setattr(data, "EMBEDDED_ROOT", tmp_path)
    c = load_collection(OmegaConf.create({"name": "toy", "loader": "embedded"}))
    assert c.name == "toy" and len(c.corpus) == 2 and c.splits == ["train", "test"]
    c = load_collection(OmegaConf.create({"name": "my-toy", "loader": "embedded", "path": "toy"}))
    assert c.name == "my-toy" and len(c.corpus) == 2
    with pytest.raises(CollectionError, match=r"no embedded collection 'nope'.*\(embedded: \['toy'\]\)"):
        load_collection(DatasetCfg(name="nope", loader="embedded"))


def test_embedded_root_is_inside_the_package():
    assert data.EMBEDDED_ROOT == Path(data.__file__).resolve().parent / "embedded"


def test_trec_loader_with_the_config_schema_fields(tmp_path, monkeypatch):
    (tmp_path / "docs.tsv").write_text("d1\tone\nd2\ttwo\n")
    (tmp_path / "topics.txt").write_text("q1\tone?\n")
    (tmp_path / "qrels.txt").write_text("q1 0 d1 1\n")
    monkeypatch.setenv("RETRIEVAL_LAB_DATA", str(tmp_path))  # relative paths are found under it
    cfg = OmegaConf.create({"name": "t", "loader": "trec", "path": "docs.tsv", "topics": "topics.txt",
                            "qrels": "qrels.txt", "test_split": "eval", "rel_threshold": 1})
    c = load_collection(cfg)
    assert c.qrels == {"eval": {"q1": {"d1": 1}}} and len(c.corpus) == 2
    cfg = OmegaConf.create({"name": "t", "loader": "trec", "corpus_path": str(tmp_path / "docs.tsv"),
                            "topics_path": "topics.txt", "qrels_path": {"dev": "qrels.txt", "test": "qrels.txt"}})
    assert load_collection(cfg).splits == ["dev", "test"]
    with pytest.raises(CollectionError, match=r"the trec loader needs topics"):
        load_collection(OmegaConf.create({"name": "t", "loader": "trec", "path": "a", "qrels": "b"}))


@needs_data("scifact")
def test_real_scifact_through_the_registry(monkeypatch):
    monkeypatch.setenv("RETRIEVAL_LAB_DATA", str(DATA))
    cfg = DatasetCfg(name="scifact", local_dir="scifact", ir_datasets_splits={"train": "beir/scifact/train",
                                                                              "test": "beir/scifact/test"})
    c = load_collection(cfg)
    assert (len(c.corpus), len(c.topics("train")), len(c.topics("test"))) == (5183, 809, 300)


# -- the tests' own real-data switch (tests/conftest.py) ----------------------------------------------------


def test_data_decision_fails_when_the_variable_is_set_but_the_collection_is_missing(tmp_path):
    (tmp_path / "scifact").mkdir()
    env = {"RETRIEVAL_LAB_DATA": str(tmp_path)}
    assert data_decision("scifact", env=env, default=tmp_path / "unused") == ("run", str(tmp_path / "scifact"))
    action, message = data_decision("cranfield", env=env, default=tmp_path)
    assert action == "fail"
    assert f"{tmp_path / 'cranfield'} is not a folder" in message and f"RETRIEVAL_LAB_DATA={tmp_path} is set" in message
    # the default folder is not consulted when the variable is set, even if the collection is there
    (tmp_path / "default" / "cranfield").mkdir(parents=True)
    assert data_decision("cranfield", env=env, default=tmp_path / "default")[0] == "fail"


def test_data_decision_skips_when_the_variable_is_unset_and_the_default_lacks_the_collection(tmp_path):
    (tmp_path / "scifact").mkdir()
    for env in ({}, {"RETRIEVAL_LAB_DATA": ""}):  # empty counts as unset
        assert data_decision("scifact", env=env, default=tmp_path) == ("run", str(tmp_path / "scifact"))
        action, reason = data_decision("cranfield", env=env, default=tmp_path)
        assert action == "skip"
        assert str(tmp_path / "cranfield") in reason and "RETRIEVAL_LAB_DATA is not set" in reason
    assert data_root({}, default=tmp_path) == tmp_path
    assert data_root({"RETRIEVAL_LAB_DATA": "/data/sets"}, default=tmp_path) == Path("/data/sets")


def test_needs_data_reports_failed_when_set_and_skipped_when_unset(pytester, monkeypatch, tmp_path):
    """The marker end to end, in a pytest run of its own: FAILED (not an error, not a skip) with the path."""
    pytester.makeconftest("from tests.conftest import pytest_configure, pytest_runtest_call, pytest_runtest_setup\n")
    pytester.makepyfile(test_x="""
        from tests.conftest import needs_data

        @needs_data("nowhere-collection")
        def test_real():
            pass
    """)
    monkeypatch.setenv("RETRIEVAL_LAB_DATA", str(tmp_path))
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*{tmp_path / 'nowhere-collection'} is not a folder*"])
    monkeypatch.delenv("RETRIEVAL_LAB_DATA")
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*nowhere-collection*RETRIEVAL_LAB_DATA is not set*"])
