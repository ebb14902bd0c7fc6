"""Summarise a finished sweep as a paper-ready table.

    python experiments/summarize.py multirun/2026-11-22/10-00-00 [--fmt latex] [--metrics ndcg@10 mrr@10]
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from retrieval_lab.evaluation.sweep import summarize  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir")
    parser.add_argument("--metrics", nargs="*", default=None)
    parser.add_argument("--fmt", choices=["markdown", "latex", "plain"], default="markdown")
    parser.add_argument("--reference", type=int, default=0, help="index of the reference row (default: first)")
    parser.add_argument("--test", choices=["t", "randomization", "none"], default="t")
    parser.add_argument("--out", default=None, help="also write the table to this file")
    args = parser.parse_args()
    text = summarize(args.sweep_dir, args.metrics, args.reference, args.test, args.fmt)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
