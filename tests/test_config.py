"""Config composition and start-up validation through the real entry point."""

import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir

from retrieval_lab.config import register
from tests.conftest import ROOT

register()


def cfg(*overrides):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def run_py(*args, timeout=600):
    return subprocess.run(
        [sys.executable, "run.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_defaults_compose():
    c = cfg()
    assert c.dataset.name == "toy"
    assert c.retriever.name == "biencoder" and c.baseline.name == "bm25"
    assert c.baseline.k1 == 0.9 and c.baseline.b == 0.4


def test_every_option_of_every_group_composes():
    for group in ["dataset", "retriever", "reranker", "loss", "hardware", "logger", "baseline"]:
        for option in sorted(p.stem for p in (ROOT / "conf" / group).glob("*.yaml")):
            c = cfg(f"{group}={option}")
            if group not in {"baseline"}:
                assert c[group] is not None, (group, option)


def test_trec_dl_picks_the_bundled_run_unless_told_otherwise():
    c = cfg("dataset=trec_dl_2019")
    assert c.retriever.name == "run" and c.dataset.rel_threshold == 2 and c.dataset.default_run == "bm25_top100"
    assert cfg("dataset=trec_dl_2019", "retriever=bm25").retriever.name == "bm25"


def test_loss_parameters_are_typed():
    assert cfg("loss=poly1").loss.epsilon == 1.0
    assert cfg("loss=poly1", "loss.epsilon=0.5").loss.epsilon == 0.5


@pytest.mark.parametrize(
    "override, expected",
    [
        ("retriever.k2=3", "k2"),  # misspelt key
        ("retriever.k=abc", "retriever.k"),  # wrong type
        ("reranker.depht=10", "depht"),
        ("loss.epsilon=1", "epsilon"),  # softmax has no epsilon
    ],
)
def test_bad_keys_fail_at_startup_naming_the_key(override, expected):
    result = run_py(override, "logger=none", "--cfg", "job")
    assert result.returncode != 0
    assert expected in result.stderr + result.stdout


def test_unknown_option_lists_valid_ones():
    result = run_py("retriever=colbertx", "--cfg", "job")
    assert result.returncode != 0
    out = result.stderr + result.stdout
    assert "retriever/colbertx" in out and "bm25" in out and "biencoder" in out


def test_repbert_preset_has_the_paper_settings_and_biencoder_defers_to_the_model():
    c = cfg("retriever=repbert")
    r = c.retriever
    assert (r.pooling, r.similarity, r.segment_ids, r.query_max_length, r.doc_max_length) == ("mean", "dot", True, 20, 256)
    assert r.train.enabled
    b = cfg("retriever=biencoder").retriever
    assert b.pooling is None and b.similarity is None and b.query_max_length is None  # the model folder decides
