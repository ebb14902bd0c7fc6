"""RankT5's scoring against Hugging Face's model, and document-only truncation (issue 10, first step)."""

import torch
from transformers import AutoTokenizer, T5ForConditionalGeneration

from retrieval_lab.models.rankt5 import RankT5
from tests.conftest import TINY_T5


def tiny(variant="encdec", **settings):
    torch.manual_seed(0)
    model = T5ForConditionalGeneration.from_pretrained(str(TINY_T5)).eval()
    return RankT5(model, AutoTokenizer.from_pretrained(str(TINY_T5)), variant=variant, **settings).eval()


def test_encdec_score_is_the_extra_id_10_logit_of_the_full_model():
    r = tiny()
    batch = r.tokenize_pairs(["what causes rain", "cats"], ["warm air rises and cools into droplets", "dogs bark"])
    with torch.no_grad():
        got = r(batch)
        start = torch.zeros((2, 1), dtype=torch.long)  # decoder_start_token_id of T5 is the pad id, 0
        logits = r.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                         decoder_input_ids=start).logits
    want = logits[:, 0, r.tokenizer.convert_tokens_to_ids("<extra_id_10>")]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert got.dtype == torch.float32 and got.shape == (2,)


def test_truncation_cuts_only_the_document():
    r = tiny(max_length=16)
    query = "why is the sky blue"
    batch = r.tokenize_pairs([query], ["a very long document " * 20])
    ids = batch["input_ids"][0].tolist()
    head = r.tokenizer(f"Query: {query} Document:", add_special_tokens=False)["input_ids"]
    assert len(ids) == 16 and ids[: len(head)] == head and ids[-1] == r.tokenizer.eos_token_id


def test_enc_variant_gradient_reaches_the_encoder():
    r = tiny("enc").train()
    batch = r.tokenize_pairs(["q one", "q two"], ["doc one", "doc two"])
    r(batch).sum().backward()
    enc_grads = [p.grad for n, p in r.model.named_parameters() if n.startswith("encoder.") and p.grad is not None]
    assert enc_grads and max(float(g.abs().max()) for g in enc_grads) > 0
    assert r.head.weight.grad is not None


def test_monot5_score_is_log_softmax_over_false_and_true_by_hand():
    from retrieval_lab.models.rankt5 import MonoT5

    torch.manual_seed(0)
    model = T5ForConditionalGeneration.from_pretrained(str(TINY_T5)).eval()
    tok = AutoTokenizer.from_pretrained(str(TINY_T5))
    m = MonoT5(model, tok, max_length=20).eval()
    batch = m.tokenize_pairs(["is water wet"], ["water is a liquid " * 30])
    ids = batch["input_ids"][0].tolist()
    suffix = tok("Relevant:", add_special_tokens=False)["input_ids"]
    assert len(ids) == 20 and ids[-1 - len(suffix):-1] == suffix  # the suffix survives the cut
    with torch.no_grad():
        got = m(batch)
        logits = model(**batch, decoder_input_ids=torch.zeros((1, 1), dtype=torch.long)).logits[0, 0]
    f, t = logits[tok.convert_tokens_to_ids("▁false")], logits[tok.convert_tokens_to_ids("▁true")]
    want = t - torch.logsumexp(torch.stack([f, t]), 0)
    torch.testing.assert_close(got[0], want, rtol=1e-5, atol=1e-5)
    assert got[0] < 0
