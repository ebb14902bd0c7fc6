"""The family registry: a saved model loads as its own family; the wrong family or role fails naming both."""

import pytest
import torch

from retrieval_lab.models import BiEncoder, CrossEncoder, FamilyMismatchError
from retrieval_lab.models.backbone import BackboneError
from retrieval_lab.models.protocols import Encoded, RerankerFamily, RetrieverFamily
from retrieval_lab.models.registry import FAMILIES, families_for, family_class, load_family
from tests.conftest import TINY_BERT


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("saved")
    torch.manual_seed(0)
    BiEncoder.from_pretrained(str(TINY_BERT), pooling="cls").save_pretrained(root / "bi")
    CrossEncoder.from_pretrained(str(TINY_BERT), max_length=48).save_pretrained(root / "ce")
    return root


def test_every_registered_family_loads_and_states_its_roles():
    assert set(FAMILIES) >= {"biencoder", "cross_encoder", "colbert"}
    for name in FAMILIES:
        cls = family_class(name)
        assert cls.family == name and set(cls.roles) <= {"retriever", "reranker"} and cls.roles
    assert families_for("retriever") == ["biencoder", "colbert"]
    assert set(families_for("reranker")) == {"biencoder", "cross_encoder", "colbert", "rankt5", "monot5"}
    assert family_class("colbert").index_kind == "multi_vector"  # readable on the class


def test_a_saved_folder_loads_as_its_own_family_with_its_settings(saved):
    bi = load_family(saved / "bi", "retriever")
    assert type(bi) is BiEncoder and bi.pooling == "cls"
    ce = load_family(saved / "ce", "reranker", family="cross_encoder")
    assert type(ce) is CrossEncoder and ce.max_length == 48
    assert type(load_family(saved / "bi", "reranker")) is BiEncoder  # a bi-encoder re-ranks too


def test_wrong_family_fails_naming_both(saved):
    with pytest.raises(FamilyMismatchError, match=r"'cross_encoder' checkpoint.*'biencoder' retriever"):
        load_family(saved / "ce", "retriever", family="biencoder")
    with pytest.raises(FamilyMismatchError, match=r"'biencoder' checkpoint.*'cross_encoder' reranker"):
        load_family(saved / "bi", "reranker", family="cross_encoder")


def test_a_family_that_cannot_play_the_role_is_refused(saved):
    with pytest.raises(BackboneError,
                       match=r"family 'cross_encoder' cannot be a retriever.*\['biencoder', 'colbert'\]"):
        load_family(saved / "ce", "retriever")


def test_a_plain_backbone_needs_the_family_from_the_config():
    with pytest.raises(BackboneError, match="say which family"):
        load_family(TINY_BERT, "retriever")
    assert type(load_family(TINY_BERT, "retriever", family="biencoder")) is BiEncoder
    with pytest.raises(ValueError, match="unknown model family 'colbert2'"):
        load_family(TINY_BERT, "retriever", family="colbert2")


def test_families_satisfy_the_protocols_of_their_roles(saved):
    bi, ce = load_family(saved / "bi", "retriever"), load_family(saved / "ce", "reranker")
    assert isinstance(bi, RetrieverFamily) and isinstance(ce, RerankerFamily)
    assert not isinstance(ce, RetrieverFamily)
    batch = bi.tokenize_docs(["one doc", "a somewhat longer second document"])
    enc = bi.encode(batch)
    assert isinstance(enc, Encoded) and enc.mask.tolist() == [True, True] and enc.embeddings.shape == (2, bi.dim)


def test_biencoder_score_pairs_is_the_dot_product_of_its_embeddings(saved):
    bi = load_family(saved / "bi", "reranker")
    queries, docs = ["rain", "cats", "rain"], ["warm air rises", "the cat sat", "the cat sat"]
    got = bi.score_pairs(queries, docs, batch_size=2)
    q = bi.encode_queries(queries, batch_size=1)
    d = bi.encode_docs(docs, batch_size=1)
    want = torch.tensor([float(q[i] @ d[i]) for i in range(3)])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
