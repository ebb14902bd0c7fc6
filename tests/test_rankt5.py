"""RankT5's scoring against Hugging Face's model, and document-only truncation (issue 10, first step)."""

import torch
from transformers import AutoTokenizer, T5ForConditionalGeneration

from retrieval_lab.models.rankt5 import MonoT5, RankT5
from tests.conftest import TINY_T5


def tiny(variant="encdec", **settings):
    torch.manual_seed(0)
    model = T5ForConditionalGeneration.from_pretrained(str(TINY_T5)).eval()
    return RankT5(model, AutoTokenizer.from_pretrained(str(TINY_T5)), variant=variant, **settings).eval()


def test_encdec_score_is_the_extra_id_10_logit_of_the_full_model():
    r = tiny()
    batch = r.tokenize_pairs(["what causes rain", "cats"], ["warm air rises and cools into droplets", "dogs bark"])
    calls = []  # the full-vocabulary projection (the LM head module) must never run for a RankT5 score
    hook = r.model.get_output_embeddings().register_forward_hook(lambda m, args, out: calls.append(out.shape))
    with torch.no_grad():
        got = r(batch)
        mono = MonoT5(r.model, r.tokenizer)
        mono(batch), mono.inference_scores(batch)
        assert calls == []
        hook.remove()
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
        got = m.inference_scores(batch)
        train_score = m(batch)
        logits = model(**batch, decoder_input_ids=torch.zeros((1, 1), dtype=torch.long)).logits[0, 0]
    f, t = logits[tok.convert_tokens_to_ids("▁false")], logits[tok.convert_tokens_to_ids("▁true")]
    want = t - torch.logsumexp(torch.stack([f, t]), 0)
    torch.testing.assert_close(got[0], want, rtol=1e-5, atol=1e-5)
    assert got[0] < 0
    # training sees logit(true) - logit(false), whose sigmoid is the same P(true)
    torch.testing.assert_close(train_score[0], t - f, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.nn.functional.logsigmoid(train_score), got, rtol=1e-5, atol=1e-5)
    # score_pairs (the re-ranking path) reports log P(true) for the raw texts
    pairs = m.score_pairs(["is water wet"], ["water is a liquid " * 30], show_progress=False)
    torch.testing.assert_close(pairs, want.reshape(1), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------------------------
# loading, saving, the registry

import json  # noqa: E402

import pytest  # noqa: E402

from retrieval_lab.models.backbone import BackboneError, FamilyMismatchError  # noqa: E402
from retrieval_lab.models.rankt5 import HEAD_FILE  # noqa: E402
from retrieval_lab.models.registry import families_for, load_family  # noqa: E402
from tests.conftest import TINY_BERT  # noqa: E402

PAIRS = (["what causes rain", "cats", "rain"], ["warm air rises and cools", "dogs bark at night", "the cat sat"])


@pytest.mark.parametrize("family,settings", [("rankt5", {"variant": "encdec"}), ("rankt5", {"variant": "enc"}),
                                             ("rankt5", {"variant": "enc", "pooling": "mean"}), ("monot5", {})])
def test_a_saved_t5_ranker_loads_as_its_own_family_and_scores_the_same(tmp_path, family, settings):
    model = load_family(TINY_T5, "reranker", family=family, max_length=40, **settings)
    if model.head is not None:  # a trained-looking head, not the fresh one: the file must carry it
        torch.nn.init.normal_(model.head.weight)
    before = model.score_pairs(*PAIRS, show_progress=False)
    model.save_pretrained(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "retrieval_lab.json").read_text())
    assert meta["family"] == family and meta["settings"]["max_length"] == 40
    assert (tmp_path / "m" / HEAD_FILE).is_file() == (settings.get("variant") == "enc")
    again = load_family(tmp_path / "m", "reranker")  # no family given: the folder says which
    assert type(again) is type(model) and again.settings == model.settings
    torch.testing.assert_close(again.score_pairs(*PAIRS, show_progress=False), before, rtol=1e-6, atol=1e-6)


def test_rankt5_and_monot5_are_registered_rerankers_only():
    assert {"rankt5", "monot5"} <= set(families_for("reranker"))
    assert "rankt5" not in families_for("retriever") and "monot5" not in families_for("retriever")


def test_the_enc_variant_loads_the_encoder_alone_and_a_fixed_fresh_head():
    torch.manual_seed(1)
    a = RankT5.from_pretrained(TINY_T5, variant="enc")
    torch.manual_seed(2)
    b = RankT5.from_pretrained(TINY_T5, variant="enc")
    assert type(a.model).__name__ == "T5EncoderModel"  # the checkpoint's decoder is not loaded
    assert not any(n.startswith("decoder.") for n, _ in a.model.named_parameters())
    # a fresh head does not depend on the global seed: an untrained Enc model is one model
    torch.testing.assert_close(a.head.weight, b.head.weight)
    torch.testing.assert_close(a.score_pairs(*PAIRS, show_progress=False), b.score_pairs(*PAIRS, show_progress=False))


def test_wrong_checkpoints_fail_naming_the_fix(tmp_path):
    enc = RankT5.from_pretrained(TINY_T5, variant="enc")
    enc.save_pretrained(tmp_path / "enc")
    with pytest.raises(BackboneError, match=r"RankT5-Enc checkpoint.*reranker.variant=enc"):
        RankT5.from_pretrained(tmp_path / "enc", variant="encdec")
    with pytest.raises(FamilyMismatchError, match=r"'rankt5' checkpoint.*'monot5'"):
        load_family(tmp_path / "enc", "reranker", family="monot5")
    with pytest.raises(BackboneError, match=r"bert model.*needs a T5 checkpoint.*cross_encoder"):
        RankT5.from_pretrained(TINY_BERT)
    enc.model.save_pretrained(tmp_path / "bare-encoder")  # a T5EncoderModel folder, no family file
    enc.tokenizer.save_pretrained(tmp_path / "bare-encoder")
    with pytest.raises(BackboneError, match=r"encoder only.*variant=enc"):
        RankT5.from_pretrained(tmp_path / "bare-encoder", variant="encdec")
    with pytest.raises(ValueError, match="score_token"):
        RankT5.from_pretrained(TINY_T5, score_token="<not-a-token>")


def test_scores_stay_float32_under_bf16_autocast():
    """The T5 stack may run in bf16; the score (one row product, the dense head, monoT5's two-way softmax) is taken
    in float32, so it matches the fp32 model to bf16's error on the hidden state, not bf16's 8-bit mantissa twice."""
    for model in (RankT5.from_pretrained(TINY_T5), RankT5.from_pretrained(TINY_T5, variant="enc"),
                  MonoT5.from_pretrained(TINY_T5)):
        fp32 = model.score_pairs(*PAIRS, precision="fp32", show_progress=False)
        batch = model.tokenize_pairs(*PAIRS)
        stack = model.model.get_decoder() if model.variant == "encdec" else model.model.get_encoder()
        dtypes = []
        linear = next(m for m in stack.block[-1].modules() if isinstance(m, torch.nn.Linear))  # an attention projection
        hook = linear.register_forward_hook(lambda m, args, out: dtypes.append(out.dtype))
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model.inference_scores(batch)
        hook.remove()
        assert dtypes == [torch.bfloat16]  # the T5 stack itself runs under autocast (the speed of bf16)
        assert bf16.dtype == torch.float32
        torch.testing.assert_close(bf16, fp32, rtol=0.05, atol=0.05)


# --------------------------------------------------------------------------------------------------------------
# training: micro-batches, NaN, every loss


def _list_batch(model, n_lists=3, list_size=6):
    from retrieval_lab.training.data import ListItem, RerankerCollator

    words = ["rain", "cloud", "cat", "dog", "sun", "wind", "snow", "tree", "river", "stone"]
    items = []
    for b in range(n_lists):
        docs = [" ".join(words[(b + j + k) % len(words)] for k in range(1 + j % 4)) for j in range(list_size - b)]
        items.append(ListItem(words[b], docs, [1.0] + [0.0] * (len(docs) - 1), f"q{b}", [f"d{j}" for j in range(len(docs))]))
    return RerankerCollator(model.tokenize_pairs)(items)


def _grads(module, batch):
    module.zero_grad()
    loss, _ = module.compute_loss(batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("variant", ["encdec", "enc", "monot5"])
def test_micro_batches_give_the_unsplit_gradient(variant):
    from retrieval_lab.losses import build_loss
    from retrieval_lab.training.modules import RerankerModule

    model = MonoT5.from_pretrained(TINY_T5, max_length=24) if variant == "monot5" else \
        RankT5.from_pretrained(TINY_T5, variant=variant, max_length=24)
    model.eval()  # dropout off: both sides see the same function
    batch = _list_batch(model)
    whole = RerankerModule(model, build_loss("poly1"))
    split = RerankerModule(model, build_loss("poly1"), micro_batch_size=4)  # 15 pairs -> 4 + 4 + 4 + 3
    loss_a, grads_a = _grads(whole, batch)
    loss_b, grads_b = _grads(split, batch)
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-5, atol=1e-6)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 5
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=1e-4, atol=1e-6, msg=name)


def test_a_nan_loss_stops_training_naming_the_step(tmp_path):
    from retrieval_lab.losses import build_loss
    from retrieval_lab.training.modules import RerankerModule
    from retrieval_lab.training.trainer import build_trainer, fit

    model = RankT5.from_pretrained(TINY_T5, variant="enc", max_length=24)
    batch = _list_batch(model)
    with torch.no_grad():
        model.head.bias.fill_(float("nan"))
    module = RerankerModule(model, build_loss("softmax"))
    trainer = build_trainer({"accelerator": "cpu", "devices": 1, "precision": "32-true"}, {"max_steps": 3},
                            tmp_path, enable_progress_bar=False)
    with pytest.raises(FloatingPointError, match=r"loss is nan at optimiser step 0 \(batch 0"):
        fit(module, torch.utils.data.DataLoader([batch], batch_size=None), trainer)


def _toy():
    from omegaconf import OmegaConf

    from retrieval_lab.config import DatasetConfig
    from retrieval_lab.data import load_collection
    from tests.conftest import ROOT

    node = {k: v for k, v in OmegaConf.load(ROOT / "conf" / "dataset" / "toy.yaml").items() if k != "defaults"}
    return load_collection(OmegaConf.merge(OmegaConf.structured(DatasetConfig), node))


def _train_mrr(model, collection, split="train"):
    """MRR@129 of ranking the whole embedded corpus for the split's queries by the model's re-ranking score."""
    qrels = collection.qrels[split]
    qids = sorted(q for q in qrels if any(g >= 1 for g in qrels[q].values()))
    doc_ids = sorted(d.id for d in collection.corpus)
    scores = model.score_pairs([collection.queries[q] for q in qids for _ in doc_ids],
                               [collection.corpus[d].contents() for _ in qids for d in doc_ids],
                               batch_size=256, show_progress=False).view(len(qids), len(doc_ids))
    total = 0.0
    for i, q in enumerate(qids):
        ranked = [doc_ids[j] for j in scores[i].argsort(descending=True).tolist()]
        total += next(1.0 / (r + 1) for r, d in enumerate(ranked) if qrels[q].get(d, 0) >= 1)
    return total / len(qids)


def _learns(variant, loss, tmp_path, steps=200):
    import random

    import lightning

    from retrieval_lab.losses import build_loss
    from retrieval_lab.training.data import RerankerCollator, RerankerListDataset
    from retrieval_lab.training.modules import RerankerModule
    from retrieval_lab.training.trainer import build_trainer, fit

    c = _toy()
    lightning.seed_everything(0, verbose=False)
    model = MonoT5.from_pretrained(TINY_T5, max_length=64) if variant == "monot5" else \
        RankT5.from_pretrained(TINY_T5, variant=variant, max_length=64)
    for m in model.modules():  # a 64-dim T5 from scratch barely learns in 200 steps with dropout 0.1
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    before = _train_mrr(model, c)
    run = {q: {d.id: random.Random(q + d.id).random() for d in c.corpus} for q in c.qrels["train"]}  # no signal
    data = RerankerListDataset(c, "train", run, list_size=16, sample_depth=1000)
    loader = torch.utils.data.DataLoader(data, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(0),
                                         collate_fn=RerankerCollator(model.tokenize_pairs))
    module = RerankerModule(model, build_loss(loss), lr=1e-3, weight_decay=0.0, schedule="constant")
    trainer = build_trainer({"accelerator": "cpu", "devices": 1, "precision": "32-true"}, {"max_steps": steps},
                            tmp_path, enable_progress_bar=False)
    fit(module, loader, trainer)
    return before, _train_mrr(model, c)


# Measured (seed 0, 200 steps of 4 lists x 16, lr 1e-3, MRR over the 129 documents for the 24 train queries):
# encdec 0.05 -> 0.50 / 0.54 / 0.55 / 0.70 (pointwise_ce / pairwise_logistic / softmax / poly1),
# enc 0.05 -> 0.22 / 0.20 / 0.39 / 0.25, monot5 0.08 -> 0.42 / 0.53 / 0.63 / 0.65. The tiny random T5 learns the
# queries it trains on; it does not generalise to the test queries in this budget (nothing beyond chance there).
LEARNS = [pytest.param(v, loss, marks=[] if (v, loss) in {("encdec", "poly1"), ("enc", "softmax")} else pytest.mark.slow)
          for v in ("encdec", "enc", "monot5") for loss in ("pointwise_ce", "pairwise_logistic", "softmax", "poly1")]


@pytest.mark.parametrize("variant,loss", LEARNS)
def test_a_tiny_t5_trained_beats_its_untrained_self(variant, loss, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        before, after = _learns(variant, loss, tmp_path)
    finally:
        torch.set_num_threads(threads)
    assert after > before + 0.1 and after > 0.15, (before, after)


def t5_base_config():
    """t5-base's config.json, field by field (no download)."""
    from transformers import T5Config

    return T5Config(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_decoder_layers=12,
                    num_heads=12, relative_attention_num_buckets=32, relative_attention_max_distance=128,
                    dropout_rate=0.1, layer_norm_epsilon=1e-6, initializer_factor=1.0, feed_forward_proj="relu",
                    is_encoder_decoder=True, tie_word_embeddings=True, pad_token_id=0, eos_token_id=1,
                    decoder_start_token_id=0, n_positions=512)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["encdec", "enc"])
def test_a_model_of_t5_base_size_trains_one_step_on_a_list_of_36_and_scores(tmp_path, variant):
    """What a user with t5-base gets, minus the download: a randomly initialised model of t5-base's exact
    configuration goes through save/load, one optimiser step on a list of 36 (128 tokens) and a scoring batch."""
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    from retrieval_lab.losses import build_loss
    from retrieval_lab.training.modules import RerankerModule

    torch.manual_seed(0)
    hf = T5ForConditionalGeneration(t5_base_config())
    hf.config.architectures = ["T5ForConditionalGeneration"]
    assert sum(p.numel() for p in hf.parameters()) == 222_903_552  # t5-base's parameter count
    # the committed tiny T5's tokenizer (t5-base's is not offline): its ids are a subset of t5-base's 32128
    tok = AutoTokenizer.from_pretrained(str(TINY_T5))
    hf.save_pretrained(tmp_path / "t5-base-random")
    tok.save_pretrained(tmp_path / "t5-base-random")
    del hf
    model = load_family(tmp_path / "t5-base-random", "reranker", family="rankt5", variant=variant)
    assert model.max_length == 128 and model.model.config.d_model == 768
    batch = _list_batch(model, n_lists=1, list_size=36)
    long = "the rain in the plains falls mainly on the river " * 20  # every pair hits the 128-token cut
    batch["pairs"] = model.tokenize_pairs(["why does it rain"] * 36, [long + str(i) for i in range(36)])
    assert tuple(batch["pairs"]["input_ids"].shape) == (36, 128)
    module = RerankerModule(model, build_loss("poly1"), lr=1e-4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    loss, _ = module.compute_loss(batch)
    loss.backward()
    before = {n: p.detach().clone() for n, p in model.named_parameters() if "block.0." in n}
    optimizer.step()
    assert torch.isfinite(loss) and any(not torch.equal(before[n], p) for n, p in model.named_parameters() if n in before)
    scores = model.score_pairs(["why does it rain"] * 8, [long] * 4 + ["cats and dogs"] * 4, batch_size=4,
                               show_progress=False)
    assert scores.shape == (8,) and torch.isfinite(scores).all()


# --------------------------------------------------------------------------------------------------------------
# review follow-ups: other T5 kinds, chunking really happens, activation checkpointing, long queries, a missing head


@pytest.mark.parametrize("config_name,model_name,kw", [
    ("T5Config", "T5ForConditionalGeneration", {}),  # tied head: t5-base (scaled)
    ("T5Config", "T5ForConditionalGeneration", {"tie_word_embeddings": False}),  # flan-t5 (not scaled)
    ("MT5Config", "MT5ForConditionalGeneration", {}),  # mT5: never scaled
    ("UMT5Config", "UMT5ForConditionalGeneration", {}),
])
def test_the_encdec_score_is_the_logit_for_every_t5_kind(config_name, model_name, kw):
    import transformers

    tok = AutoTokenizer.from_pretrained(str(TINY_T5))
    torch.manual_seed(0)
    config = getattr(transformers, config_name)(vocab_size=len(tok), d_model=64, d_kv=16, d_ff=128, num_layers=1,
                                                num_heads=2, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
                                                **kw)
    hf = getattr(transformers, model_name)(config).eval()
    r = RankT5(hf, tok).eval()
    batch = r.tokenize_pairs(*PAIRS)
    with torch.no_grad():
        want = hf(**batch, decoder_input_ids=torch.zeros((3, 1), dtype=torch.long)).logits[:, 0, r.score_token_id]
        got = r(batch)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_micro_batches_run_chunk_by_chunk_and_recompute_in_backward():
    from retrieval_lab.losses import build_loss
    from retrieval_lab.training.modules import RerankerModule

    model = RankT5.from_pretrained(TINY_T5, variant="enc", max_length=24).eval()
    widths = []
    hook = model.model.get_encoder().register_forward_pre_hook(
        lambda m, args, kwargs: widths.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True)
    batch = _list_batch(model)
    full = tuple(batch["pairs"]["input_ids"].shape)
    loss, _ = RerankerModule(model, build_loss("softmax"), micro_batch_size=4).compute_loss(batch)
    forward = list(widths)
    loss.backward()
    hook.remove()
    assert [s[0] for s in forward] == [4, 4, 4, 3]  # 15 pairs in chunks of 4
    assert all(s[1] <= full[1] for s in forward) and any(s[1] < full[1] for s in forward)  # each cut to its own width
    assert sorted(widths[len(forward):]) == sorted(forward)  # each chunk recomputed once in the backward pass


@pytest.mark.parametrize("variant", ["encdec", "enc"])
def test_activation_checkpointing_gives_the_same_gradient_in_train_mode(variant):
    """Unlike micro-batches (dropout drawn per chunk, so micro_batch_size is part of the model's cache key),
    checkpointing replays the same dropout draws: the gradient is bit for bit the same, with dropout on."""
    from retrieval_lab.losses import build_loss
    from retrieval_lab.models.backbone import enable_gradient_checkpointing
    from retrieval_lab.training.modules import RerankerModule

    model = RankT5.from_pretrained(TINY_T5, variant=variant, max_length=24).train()
    batch = _list_batch(model)
    module = RerankerModule(model, build_loss("poly1"))
    torch.manual_seed(3)
    loss_a, grads_a = _grads(module, batch)
    assert enable_gradient_checkpointing(model) == 1 and model.model.is_activation_checkpointing
    torch.manual_seed(3)
    loss_b, grads_b = _grads(module, batch)
    assert torch.equal(loss_a, loss_b)
    for name in grads_a:
        assert torch.equal(grads_a[name], grads_b[name]), name
    torch.manual_seed(4)
    loss_c, _ = _grads(module, batch)
    assert not torch.equal(loss_a, loss_c)  # dropout is on: another seed gives another loss


def test_a_query_longer_than_the_budget_is_cut_keeping_the_template(caplog):
    r = tiny(max_length=32)
    long_query = "why does the rain fall on the plains " * 20
    with caplog.at_level("WARNING"):
        batch = r.tokenize_pairs([long_query, "rain"], ["a document", "a document"])
    assert batch["input_ids"].shape[1] == 32
    ids = batch["input_ids"][0].tolist()
    marker = r.tokenizer(" Document:", add_special_tokens=False)["input_ids"]
    assert ids[-1] == r.tokenizer.eos_token_id and ids[-1 - len(marker):-1] == marker
    assert ids[:2] == r.tokenizer("Query:", add_special_tokens=False)["input_ids"][:2]
    assert "1 of 2 queries of a batch are longer than max_length=32" in caplog.text
    with caplog.at_level("WARNING"):
        r.tokenize_pairs([long_query], ["a document"])
    assert caplog.text.count("longer than max_length") == 1 and r.queries_cut == 2  # warned once, counted always


def test_a_saved_enc_folder_without_its_head_fails(tmp_path):
    RankT5.from_pretrained(TINY_T5, variant="enc").save_pretrained(tmp_path / "enc")
    (tmp_path / "enc" / HEAD_FILE).unlink()
    with pytest.raises(BackboneError, match=r"RankT5-Enc model but has no rankt5_head.safetensors"):
        RankT5.from_pretrained(tmp_path / "enc")


def test_an_uncut_pair_is_exactly_the_tokenised_template_string():
    """Without a cut, the hand-built rows are what the tokenizer gives for the whole string (so the model sees the
    text it was pre-trained on): RankT5 without a suffix, monoT5 with " Relevant:"."""
    for model, suffix in ((tiny(), ""), (MonoT5.from_pretrained(TINY_T5), " Relevant:")):
        q, d = "what causes rain", "warm air rises and cools into droplets"
        ids = model.tokenize_pairs([q], [d])["input_ids"][0].tolist()
        assert ids == model.tokenizer(f"Query: {q} Document: {d}{suffix}")["input_ids"]
