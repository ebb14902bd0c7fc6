"""Zero-shot check: our bi-encoder stage against the same model run through sentence-transformers.

    python experiments/compare_sentence_transformers.py [--dataset scifact] [--run-dir outputs/...]

Encodes the collection with ``SentenceTransformer(<model>).encode(normalize_embeddings=True)``, searches
exactly (inner product over all documents, top 1000), evaluates with the same evaluator as the pipeline,
and prints that next to the bi-encoder figures of a finished ``python run.py retriever=biencoder`` run.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from omegaconf import OmegaConf  # noqa: E402

from retrieval_lab.data import load_collection  # noqa: E402
from retrieval_lab.evaluation import evaluate  # noqa: E402
from retrieval_lab.models.backbone import resolve_backbone  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--run-dir", default=None, help="a finished run.py folder with a 'biencoder' stage")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    from sentence_transformers import SentenceTransformer

    cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "dataset" / f"{args.dataset}.yaml")
    cfg = cfg.get("dataset", cfg)
    collection = load_collection(cfg)
    split = cfg.test_split
    topics = collection.topics(split)
    model = SentenceTransformer(resolve_backbone(args.model), device="cpu")
    start = time.perf_counter()
    docs = model.encode([d.contents() for d in collection.corpus], batch_size=args.batch_size,
                        normalize_embeddings=True, show_progress_bar=True, convert_to_numpy=True)
    seconds = time.perf_counter() - start
    qids = list(topics)
    queries = model.encode([topics[q] for q in qids], normalize_embeddings=True, convert_to_numpy=True)
    scores = torch.from_numpy(queries @ docs.T)
    top = scores.topk(min(1000, docs.shape[0]), dim=1)
    ids = collection.corpus.ids()
    run = {q: {ids[j]: float(s) for s, j in zip(top.values[i].tolist(), top.indices[i].tolist())}
           for i, q in enumerate(qids)}
    result = evaluate(collection.qrels[split], run, rel_threshold=collection.rel_threshold)
    print(f"sentence-transformers on {collection.name} {split}: "
          + ", ".join(f"{m} {v:.4f}" for m, v in result.aggregate.items())
          + f"  ({len(ids) / seconds:.1f} docs/s)")
    if args.run_dir:
        ours = json.loads((Path(args.run_dir) / "metrics.json").read_text())["biencoder"]
        print("ours:                    " + ", ".join(f"{m} {v:.4f}" for m, v in ours.items()))
        print(f"difference in ndcg@10: {ours['ndcg@10'] - result.aggregate['ndcg@10']:+.4f}")


if __name__ == "__main__":
    main()
