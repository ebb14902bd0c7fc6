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


# -- ablation [A]: single [CLS] vector, dot product ---------------------------------------------------------------


@pytest.fixture(scope="module")
def single():
    torch.manual_seed(0)
    m = ColBERT.from_pretrained(str(TINY_BERT), dim=4, query_max_length=8, doc_max_length=12, single_vector=True)
    return m.eval()


def cls_vectors(model, tok):
    """By hand: the encoder's [CLS] output times the [CLS] linear layer's weight, no normalisation."""
    with torch.no_grad():
        hidden = model.encoder(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]).last_hidden_state
        return hidden[:, 0] @ model.cls_linear.weight.T


def test_single_vector_is_the_cls_linear_vector_and_scores_by_dot_product(single):
    assert single.index_kind == "single_vector" and ColBERT.index_kind == "multi_vector"
    assert single.linear is None and single.cls_linear.bias is None
    assert single.cls_linear.out_features == 8 * 4 == single.single_dim  # Nq * m
    assert single.default_temperature == 1.0
    queries, docs = ["what causes rain", "cats"], ["warm air rises and cools", "the cat sat", "clouds"]
    q_hand = cls_vectors(single, single.tokenize_queries(queries))
    d_hand = cls_vectors(single, single.tokenize_docs(docs))
    with torch.no_grad():
        q, d = single.encode(single.tokenize_queries(queries)), single.encode(single.tokenize_docs(docs))
    assert q.embeddings.shape == (2, 32) and q.mask.tolist() == [True, True]
    assert not torch.allclose(d_hand.norm(dim=-1), torch.ones(3))  # not normalised
    torch.testing.assert_close(q.embeddings, q_hand)
    want = q_hand @ d_hand.T
    torch.testing.assert_close(single.score(q, d), want)
    # the inference path: one stacked float32 tensor per side, as the FAISS single-vector index needs
    qe, de = single.encode_queries(queries, batch_size=1), single.encode_docs(docs, batch_size=2)
    assert isinstance(qe, torch.Tensor) and qe.dtype == torch.float32 and qe.shape == (2, 32) and de.shape == (3, 32)
    torch.testing.assert_close(qe, q_hand, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(de, d_hand, rtol=1e-5, atol=1e-5)
    assert single.encode_docs([]).shape == (0, 32)
    got = single.score_pairs(["cats", "what causes rain", "cats"], ["clouds", "the cat sat", "the cat sat"])
    torch.testing.assert_close(got, torch.stack([want[1, 2], want[0, 1], want[1, 1]]), rtol=1e-5, atol=1e-5)


def test_single_vector_vectors_work_in_a_faiss_inner_product_index(single):
    import numpy as np

    from retrieval_lab.indexes.faiss_index import FaissIndex

    docs = ["warm air rises and cools", "the cat sat", "clouds", "rain falls on the plain"]
    d = single.encode_docs(docs, show_progress=False).numpy()
    q = single.encode_queries(["what causes rain", "cats"]).numpy()
    index = FaissIndex().build(np.ascontiguousarray(d), ["a", "b", "c", "d"])
    scores, pos = index.search_arrays(np.ascontiguousarray(q), 4)
    want = q @ d.T
    assert (pos == np.argsort(-want, axis=1, kind="stable")).all()
    np.testing.assert_allclose(scores, np.take_along_axis(want, pos, axis=1), rtol=1e-5, atol=1e-5)


def test_single_vector_save_and_load_give_identical_scores(single, tmp_path):
    from safetensors.torch import load_file

    single.save_pretrained(tmp_path / "a")
    assert set(load_file(str(tmp_path / "a" / "colbert_linear.safetensors"))) == {"cls_weight"}
    again = ColBERT.from_pretrained(str(tmp_path / "a")).eval()
    assert again.settings == single.settings and again.settings["single_vector"] is True
    assert again.index_kind == "single_vector" and torch.equal(again.cls_linear.weight, single.cls_linear.weight)
    pairs = (["what causes rain", "cats"], ["warm air rises", "the cat sat"])
    assert torch.equal(again.score_pairs(*pairs), single.score_pairs(*pairs))
    docs = ["warm air rises", "the cat sat"]
    assert torch.equal(again.encode_docs(docs), single.encode_docs(docs))


def test_a_cls_layer_of_the_wrong_size_is_refused(single):
    with pytest.raises(ValueError, match=r"query_max_length \* dim = 16 \* 4 = 64"):
        ColBERT(single.encoder, single.tokenizer, None, single.cls_linear, **{**single.settings, "query_max_length": 16})


# -- ablation [D]: the first k layers -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def three_layers(tmp_path_factory):
    """TINY_BERT has one layer: the same config with three, random weights, saved with its tokenizer."""
    from transformers import AutoConfig, AutoTokenizer, BertModel

    config = AutoConfig.from_pretrained(str(TINY_BERT))
    assert config.num_hidden_layers == 1
    config.num_hidden_layers = 3
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("bert3") / "bert3"
    BertModel(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(str(TINY_BERT)).save_pretrained(path)
    return path


def test_num_layers_keeps_the_first_layers_and_round_trips(three_layers, tmp_path):
    full = ColBERT.from_pretrained(str(three_layers), dim=16, query_max_length=8, doc_max_length=12).eval()
    assert len(full.encoder.encoder.layer) == 3
    torch.manual_seed(0)
    cut = ColBERT.from_pretrained(str(three_layers), dim=16, query_max_length=8, doc_max_length=12,
                                  num_layers=1).eval()
    assert len(cut.encoder.encoder.layer) == 1 and cut.encoder.config.num_hidden_layers == 1
    assert cut.settings["num_layers"] == 1
    assert torch.equal(cut.encoder.encoder.layer[0].attention.self.query.weight,
                       full.encoder.encoder.layer[0].attention.self.query.weight)  # the first layer, not another
    enc = cut.encode(cut.tokenize_docs(["rain falls on the plain", "clouds"]))
    assert enc.embeddings.shape[-1] == 16 and torch.isfinite(enc.embeddings).all()
    cut.save_pretrained(tmp_path / "cut")
    pairs = (["what causes rain", "cats"], ["warm air rises", "the cat sat"])
    want = cut.score_pairs(*pairs)
    for again in (ColBERT.from_pretrained(str(tmp_path / "cut")),  # the saved setting
                  ColBERT.from_pretrained(str(tmp_path / "cut"), num_layers=1)):  # given again: no change
        assert len(again.encoder.encoder.layer) == 1 and again.settings == cut.settings
        assert torch.equal(again.eval().score_pairs(*pairs), want)


@pytest.mark.parametrize("k", [0, 4, -1])
def test_num_layers_out_of_range_is_refused(three_layers, k):
    with pytest.raises(ValueError, match=rf"num_layers must be between 1 and 3 .*'bert'.*got {k}"):
        ColBERT.from_pretrained(str(three_layers), num_layers=k)


def test_num_layers_needs_a_bert_style_layer_list():
    from transformers import T5EncoderModel

    from retrieval_lab.models.colbert import keep_first_layers
    from tests.conftest import TINY_T5

    t5 = T5EncoderModel.from_pretrained(str(TINY_T5))
    with pytest.raises(ValueError, match=r"encoder\.layer.*'t5' backbone \(T5EncoderModel\)"):
        keep_first_layers(t5, 1)


# -- queries longer than Nq ---------------------------------------------------------------------------------------


def test_truncated_queries_are_counted_and_warned_about_once(model, caplog):
    # the tiny tokenizer reads "a" as one token; Nq = 8 leaves 5 tokens for the query's body
    texts = ["rain", "a a a a a", "a a a a a a", "a much longer query that will not fit in eight tokens at all"]
    assert model.tokenize_queries(texts)["truncated"].tolist() == [False, False, True, True]
    with caplog.at_level("WARNING", logger="retrieval_lab.models.colbert"):
        model.encode_queries(texts, batch_size=1)
    records = [r for r in caplog.records if r.name == "retrieval_lab.models.colbert"]
    assert len(records) == 1
    assert records[0].getMessage() == ("ColBERT: 2 of 4 queries are longer than query_max_length=8 tokens and were "
                                       "truncated (e.g. 'a much longer query that will not fit in eight tokens at "
                                       "all')")
    caplog.clear()
    with caplog.at_level("WARNING", logger="retrieval_lab.models.colbert"):
        model.encode_queries(["rain", "a a a a a"])
    assert not [r for r in caplog.records if r.name == "retrieval_lab.models.colbert"]


def test_a_fresh_colbert_is_the_same_model_whatever_the_global_seed():
    """The token store's cache key covers the backbone and the settings: the new weights must follow from them."""
    torch.manual_seed(1)
    a = ColBERT.from_pretrained(str(TINY_BERT), dim=16)
    torch.manual_seed(2)
    b = ColBERT.from_pretrained(str(TINY_BERT), dim=16)
    assert torch.equal(a.linear.weight, b.linear.weight)
    emb_a, emb_b = a.encoder.get_input_embeddings().weight, b.encoder.get_input_embeddings().weight
    assert torch.equal(emb_a[a.q_marker_id], emb_b[b.q_marker_id]) and torch.equal(emb_a, emb_b)
    state = torch.random.get_rng_state()
    ColBERT.from_pretrained(str(TINY_BERT), dim=16)
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's generator is left as it was


@pytest.mark.parametrize("loss", ["pairwise_softmax", "softmax", "poly1", "pairwise_logistic", "pointwise_ce",
                                  "margin"])
def test_every_loss_trains_colbert_through_the_retriever_module(loss):
    """One signature for every loss: each gives a finite loss on ColBERT's in-batch MaxSim scores, and a step along
    its gradient lowers it."""
    from retrieval_lab.losses import build_loss
    from retrieval_lab.training.data import RetrieverCollator, RetrieverPairDataset
    from tests.test_ddp import _collection

    torch.manual_seed(0)
    m = ColBERT.from_pretrained(str(TINY_BERT), dim=16, query_max_length=8, doc_max_length=12).eval()
    c, run = _collection()
    ds = RetrieverPairDataset(c, "train", run, num_hard_negatives=1, hard_negative_depth=8, seed=0)
    batch = RetrieverCollator(m.tokenize_queries, m.tokenize_docs)([ds[i] for i in range(4)])
    from retrieval_lab.training.modules import RetrieverModule

    module = RetrieverModule(m, build_loss(loss), temperature=1.0)
    before, *_ = module.loss_scores_labels(batch)
    assert torch.isfinite(before)
    before.backward()
    with torch.no_grad():
        for p in m.parameters():
            if p.grad is not None:
                p -= 1e-2 * p.grad
    after, *_ = module.loss_scores_labels(batch)
    assert after < before
