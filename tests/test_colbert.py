"""ColBERT family: markers, query augmentation, punctuation filtering, exact MaxSim / AvgSim against a loop."""

import pytest
import torch

from retrieval_lab.models.colbert import ColBERT, maxsim
from retrieval_lab.models.protocols import Encoded
from tests.conftest import TINY_BERT


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = ColBERT.from_pretrained(str(TINY_BERT), dim=16, query_max_length=8, doc_max_length=12)
    return m.eval()


def loop_score(q, qm, d, dm, similarity="cosine", interaction="maxsim"):
    """The definition, one number at a time (float64)."""
    total = 0.0
    for i in range(q.shape[0]):
        if not qm[i]:
            continue
        sims = []
        for j in range(d.shape[0]):
            if dm[j]:
                a, b = q[i].double(), d[j].double()
                sims.append(float(a @ b) if similarity == "cosine" else -float(((a - b) ** 2).sum()))
        if sims:
            total += max(sims) if interaction == "maxsim" else sum(sims) / len(sims)
    return total


@pytest.mark.parametrize("similarity", ["cosine", "l2"])
@pytest.mark.parametrize("interaction", ["maxsim", "avgsim"])
def test_maxsim_equals_the_loop_with_padding_and_negative_similarities(similarity, interaction):
    g = torch.Generator().manual_seed(1)
    # queries in the positive orthant, documents in the negative one: every real similarity is negative
    q = torch.nn.functional.normalize(torch.rand(3, 5, 4, generator=g) + 0.05, dim=-1)
    d = -torch.nn.functional.normalize(torch.rand(3, 6, 4, generator=g) + 0.05, dim=-1)
    qm = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 1, 0, 1]], dtype=torch.bool)
    dm = torch.tensor([[1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1], [0, 1, 0, 1, 0, 0]], dtype=torch.bool)
    d = d.masked_fill(~dm.unsqueeze(-1), 0.0)  # padding as zero vectors: it must not win a max of negatives
    got = maxsim(Encoded(q, qm), Encoded(d, dm), similarity, interaction)
    want = torch.tensor([[loop_score(q[a], qm[a], d[b], dm[b], similarity, interaction) for b in range(3)]
                         for a in range(3)], dtype=torch.float64)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
    if interaction == "maxsim" and similarity == "cosine":
        assert (got < 0).all()  # every real similarity is negative: a zero pad never won


def test_query_markers_and_augmentation(model):
    tok = model.tokenize_queries(["rain", "a much longer query that will not fit in eight tokens at all"])
    ids, att, sm = tok["input_ids"], tok["attention_mask"], tok["score_mask"]
    assert ids.shape == (2, 8)
    assert (ids[:, 0] == model.tokenizer.cls_token_id).all() and (ids[:, 1] == model.q_marker_id).all()
    assert (ids[0][att[0] == 0] == model.tokenizer.mask_token_id).all() and (att[0] == 0).any()  # [MASK] padding
    assert sm.all()  # the masks' outputs are query vectors
    assert att[1].all() and ids[1, -1] == model.tokenizer.sep_token_id  # truncated to Nq, [SEP] kept
    off = ColBERT(model.encoder, model.tokenizer, model.linear, **{**model.settings, "query_augmentation": False})
    t2 = off.tokenize_queries(["rain", "a much longer query"])
    assert (t2["score_mask"] == t2["attention_mask"].bool()).all() and not t2["score_mask"].all()


def test_documents_drop_punctuation_and_padding(model):
    tok = model.tokenize_docs(["rain , falls .", "clouds"])
    ids, sm = tok["input_ids"], tok["score_mask"]
    assert (ids[:, 1] == model.d_marker_id).all()
    punct = set(model.tokenizer.encode(",", add_special_tokens=False) + model.tokenizer.encode(".", add_special_tokens=False))
    for i in range(2):
        for j in range(ids.shape[1]):
            expect = bool(tok["attention_mask"][i, j]) and int(ids[i, j]) not in punct
            assert bool(sm[i, j]) == expect


def test_encoded_vectors_are_normalised_and_masked(model):
    enc = model.encode(model.tokenize_docs(["rain falls on the plain", "clouds"]))
    norms = enc.embeddings.norm(dim=-1)
    torch.testing.assert_close(norms[enc.mask], torch.ones(int(enc.mask.sum())))
    assert (norms[~enc.mask] == 0).all() and enc.embeddings.shape[-1] == 16


def test_score_pairs_equals_maxsim_of_the_encoded_texts(model):
    queries, docs = ["rain", "cats", "rain"], ["warm air rises and cools", "the cat sat", "the cat sat"]
    got = model.score_pairs(queries, docs, batch_size=2)
    with torch.no_grad():
        q = model.encode(model.tokenize_queries(queries))
        d = model.encode(model.tokenize_docs(docs))
        want = torch.stack([model.score(Encoded(q.embeddings[i:i + 1], q.mask[i:i + 1]),
                                        Encoded(d.embeddings[i:i + 1], d.mask[i:i + 1]))[0, 0] for i in range(3)])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_save_and_load_round_trip(model, tmp_path):
    model.save_pretrained(tmp_path / "c")
    again = ColBERT.from_pretrained(str(tmp_path / "c")).eval()
    assert again.settings == model.settings and again.q_marker_id == model.q_marker_id
    pairs = (["what causes rain"], ["warm air rises"])
    torch.testing.assert_close(again.score_pairs(*pairs), model.score_pairs(*pairs), rtol=1e-6, atol=1e-6)
