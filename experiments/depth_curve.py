"""Metrics of a finished retrieve-then-rerank run as a function of the re-ranking depth, from its run files alone.

    python experiments/depth_curve.py outputs/<run> [--depths 0 10 20 50 100] [--metrics ndcg@10 recall@100]

Reads the run folder's config.yaml (for the collection and its judgments), runs/<first>.trec and
runs/<first>__<reranker>_at<D>.trec; for each depth d <= D, the top d are ordered by the re-ranker's scores and
the rest keep the first stage's order (no model is called). Writes depth_curve.md (a table) and depth_curve.png
(the curve, with cost as pairs scored per query) in the run folder.
"""

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from omegaconf import OmegaConf  # noqa: E402

from retrieval_lab.cache import write_text_atomic  # noqa: E402
from retrieval_lab.data import load_collection, read_trec_run  # noqa: E402
from retrieval_lab.evaluation.depth import depth_curve  # noqa: E402
from retrieval_lab.evaluation.metrics import evaluate  # noqa: E402

RERANKED = re.compile(r"^(?P<first>.+)__(?P<reranker>.+)_at(?P<depth>\d+)\.trec$")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--depths", nargs="*", type=int, default=None, help="default: 0 5 10 20 30 50 ... up to D")
    parser.add_argument("--metrics", nargs="*", default=["ndcg@10", "mrr@10", "recall@10"])
    args = parser.parse_args()

    root = Path(args.run_dir)
    found = [(m, p) for p in sorted((root / "runs").glob("*.trec")) if (m := RERANKED.match(p.name))]
    if not found:
        sys.exit(f"{root / 'runs'}: no reranked run (<first>__<reranker>_at<depth>.trec) to cut")
    cfg = OmegaConf.load(root / "config.yaml")
    collection = load_collection(cfg.dataset)
    split = cfg.dataset.test_split
    threshold = cfg.eval.rel_threshold if cfg.eval.get("rel_threshold") is not None else collection.rel_threshold
    qrels = collection.qrels[split]

    def score(run):
        return evaluate(qrels, run, args.metrics, rel_threshold=threshold).aggregate

    for match, path in found:
        full = int(match["depth"])
        first_path = root / "runs" / f"{match['first']}.trec"
        depths = args.depths or [d for d in (0, 5, 10, 20, 30, 50, 75, 100, 200, 500, 1000) if d < full] + [full]
        too_deep = [d for d in depths if d > full]
        if too_deep:
            sys.exit(f"{path.name} re-ranked the top {full}: cannot cut at {too_deep}")
        curve = depth_curve(read_trec_run(first_path), read_trec_run(path), depths, score)
        name = f"{match['first']}>>{match['reranker']}"
        lines = [f"| depth | {' | '.join(args.metrics)} |", "|---:|" + "---:|" * len(args.metrics)]
        for d, means in curve.items():
            label = f"{d} ({match['first']} alone)" if d == 0 else str(d)
            lines.append(f"| {label} | " + " | ".join(f"{means[m]:.4f}" for m in args.metrics) + " |")
        table = f"{name} on {collection.name} {split} ({len(qrels)} queries), re-ranking depth cut from {path.name}\n\n"
        table += "\n".join(lines)
        print(table + "\n")
        write_text_atomic(root / "depth_curve.md", table + "\n")
        _plot(curve, args.metrics, name, root / "depth_curve.png")
        print(f"wrote {root / 'depth_curve.md'} and {root / 'depth_curve.png'}")


def _plot(curve, metrics, title, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    depths = list(curve)
    for m in metrics:
        ax.plot(depths, [curve[d][m] for d in depths], marker="o", label=m)
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlabel("re-ranking depth (pairs scored per query)")
    ax.set_ylabel("score")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=150)
    tmp.replace(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
