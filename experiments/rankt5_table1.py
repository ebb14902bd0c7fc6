"""RankT5's Table 1 (model x loss -> MRR@10, nDCG@5, nDCG@10, MAP, † = significantly better than monoT5) from a
finished `+experiment=rankt5_table1` sweep (or several sweep folders: e.g. monoT5 run apart).

    python run.py -m +experiment=rankt5_table1 reranker.model=/path/to/t5-base
    python experiments/rankt5_table1.py multirun/<date>/<time>-<suffix> [more sweep folders] [--fmt latex]

Writes table1.md (or .tex) into the first sweep folder; the table is the last thing printed.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from retrieval_lab.cache import write_text_atomic  # noqa: E402
from retrieval_lab.evaluation.sweep import model_loss_table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dirs", nargs="+")
    parser.add_argument("--metrics", nargs="*", default=["mrr@10", "ndcg@5", "ndcg@10", "map"])
    parser.add_argument("--test", choices=["t", "randomization", "none"], default="t")
    parser.add_argument("--fmt", choices=["markdown", "latex"], default="markdown")
    args = parser.parse_args()
    text = model_loss_table(args.sweep_dirs, args.metrics, test=args.test, fmt=args.fmt)
    out = Path(args.sweep_dirs[0]) / ("table1.tex" if args.fmt == "latex" else "table1.md")
    write_text_atomic(out, text + "\n")
    print(f"written to {out}", file=sys.stderr)
    print(text)


if __name__ == "__main__":
    main()
