"""Tables, files and significance tests over evaluation results."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from retrieval_lab.cache import write_text_atomic
from retrieval_lab.evaluation.metrics import EvalResult

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(c, c) for c in text)


def metrics_table(
    rows: Mapping[str, Mapping[str, float]],
    metrics: Sequence[str],
    fmt: str = "markdown",
    decimals: int = 4,
    first_column: str = "system",
) -> str:
    """Systems (or stages) x metrics, ``decimals`` places; the best value per column in bold (markdown, latex).

    Higher is better for every metric. Ties at the shown precision are all bold; nothing is bold in a one-row
    table; a missing value shows as "-". LaTeX output is a booktabs ``tabular`` (``\\usepackage{booktabs}``).
    """
    if fmt not in ("markdown", "latex", "plain"):
        raise ValueError(f"fmt={fmt!r}: expected 'markdown', 'latex' or 'plain'")
    metrics = list(metrics)
    names = list(rows)

    def shown(name, metric):
        value = rows[name].get(metric)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return f"{value:.{decimals}f}"

    cells = {(n, m): shown(n, m) for n in names for m in metrics}
    best = {}
    for m in metrics:
        values = [float(cells[n, m]) for n in names if cells[n, m] is not None]
        best[m] = max(values) if values else None

    def cell(name, metric):
        text = cells[name, metric]
        if text is None:
            return "-"
        if fmt != "plain" and len(names) > 1 and float(text) == best[metric]:
            return f"**{text}**" if fmt == "markdown" else f"\\textbf{{{text}}}"
        return text

    body = [[name] + [cell(name, m) for m in metrics] for name in names]
    header = [first_column] + metrics

    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * len(metrics)]
        lines += ["| " + " | ".join([r[0].replace("|", "\\|")] + r[1:]) + " |" for r in body]
        return "\n".join(lines)
    if fmt == "latex":
        lines = [
            r"\begin{tabular}{l" + "r" * len(metrics) + "}",
            r"\toprule",
            " & ".join(_latex_escape(h) for h in header) + r" \\",
            r"\midrule",
        ]
        lines += [" & ".join([_latex_escape(r[0])] + r[1:]) + r" \\" for r in body]
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines)
    widths = [max(len(str(r[i])) for r in [header] + body) for i in range(len(header))]
    fmt_row = lambda r: "  ".join(  # noqa: E731
        str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths))
    )
    return "\n".join([fmt_row(header), "  ".join("-" * w for w in widths)] + [fmt_row(r) for r in body])


def write_metrics(out_dir: str | os.PathLike, stage_results: Mapping[str, EvalResult]) -> tuple[Path, Path]:
    """Write ``metrics.json`` (stage -> metric -> mean) and ``per_query.tsv`` (stage, metric, qid, value).

    Both are written atomically (temporary file, then rename), metrics.json last: a run folder with it is
    finished. Returns the two paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    aggregate = {stage: dict(res.aggregate) for stage, res in stage_results.items()}
    lines = ["stage\tmetric\tqid\tvalue"]
    for stage, res in stage_results.items():
        for metric, per_q in res.per_query.items():
            lines += [f"{stage}\t{metric}\t{qid}\t{float(v)!r}" for qid, v in per_q.items()]
    metrics_path, per_query_path = out / "metrics.json", out / "per_query.tsv"
    write_text_atomic(per_query_path, "\n".join(lines) + "\n")
    write_text_atomic(metrics_path, json.dumps(aggregate, indent=2) + "\n")
    return metrics_path, per_query_path


def paired_test(
    per_query_a: Mapping[str, float],
    per_query_b: Mapping[str, float],
    test: str = "t",
    n_resamples: int = 10_000,
    seed: int = 0,
) -> float:
    """Two-sided p-value of a paired test between two systems' per-query scores (qid -> value, same queries).

    ``t``: Student's paired t-test (scipy ``ttest_rel``). ``randomization``: the paired permutation test
    (swap each query's two scores at random, statistic = mean difference; scipy ``permutation_test``, exact
    when 2^n <= n_resamples). Returns 1.0 when the two systems score every query the same.
    """
    from scipy import stats

    if test not in ("t", "randomization"):
        raise ValueError(f"test={test!r}: expected 't' or 'randomization'")
    if set(per_query_a) != set(per_query_b):
        only_a, only_b = set(per_query_a) - set(per_query_b), set(per_query_b) - set(per_query_a)
        raise ValueError(
            f"paired test needs the same queries: {len(only_a)} only in a (e.g. {sorted(only_a)[:3]}), "
            f"{len(only_b)} only in b (e.g. {sorted(only_b)[:3]})"
        )
    qids = sorted(per_query_a)
    if len(qids) < 2:
        raise ValueError(f"paired test needs at least 2 queries, got {len(qids)}")
    a = np.array([per_query_a[q] for q in qids], dtype=np.float64)
    b = np.array([per_query_b[q] for q in qids], dtype=np.float64)
    if np.allclose(a, b, rtol=0, atol=1e-12):
        return 1.0
    if test == "t":
        return float(stats.ttest_rel(a, b).pvalue)
    result = stats.permutation_test(
        (a, b),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        permutation_type="samples",
        vectorized=True,
        n_resamples=n_resamples,
        alternative="two-sided",
        batch=max(1, 2_000_000 // len(qids)),
        rng=np.random.default_rng(seed),
    )
    return float(result.pvalue)
