"""Turn a finished Hydra sweep (``multirun/...``) into one table: a row per setting, the last stage's
metrics, mean ± sample standard deviation (ddof=1) over seeds when ``seed`` was swept, and paired tests
against a reference row with Holm's correction for the number of comparisons."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

from retrieval_lab.evaluation.report import metrics_table, paired_test

IGNORED_KEYS = ("logger", "cache_dir", "hydra.", "show_progress")


def load_job(job_dir: Path) -> dict:
    overrides = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or []
    settings = {}
    for item in overrides:
        key, _, value = item.partition("=")
        key = key.lstrip("+~")
        if not key.startswith(IGNORED_KEYS):
            settings[key] = value
    metrics = json.loads((job_dir / "metrics.json").read_text())
    stage = list(metrics)[-1]  # stages are written in pipeline order: the last one is the final ranking
    per_query: dict[str, dict[str, float]] = defaultdict(dict)
    with open(job_dir / "per_query.tsv", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["stage"] == stage:
                per_query[row["metric"]][row["qid"]] = float(row["value"])
    return {"dir": job_dir, "settings": settings, "stage": stage, "metrics": metrics[stage], "per_query": per_query}


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone)."""
    order = np.argsort(p_values)
    m = len(p_values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def seed_spread(values) -> float | None:
    """Spread of one setting's metric over its seeds: the sample standard deviation (ddof=1, the square root of
    the unbiased variance estimate). None for a single seed: one value gives no estimate of spread (not 0)."""
    values = np.asarray(list(values), dtype=np.float64)
    return float(np.std(values, ddof=1)) if values.size > 1 else None


def finished_jobs(sweep_dirs) -> list[dict]:
    """:func:`load_job` of every finished job (``*/metrics.json``) of one sweep folder or several, in job order;
    ``FileNotFoundError`` when there is none."""
    dirs = [sweep_dirs] if isinstance(sweep_dirs, (str, Path)) else list(sweep_dirs)
    jobs = [load_job(p.parent) for d in dirs for p in sorted(Path(d).glob("*/metrics.json"), key=_job_order)]
    if not jobs:
        raise FileNotFoundError(f"{sweep_dirs}: no finished job (no */metrics.json)")
    return jobs


def seed_mean_per_query(jobs: list[dict], metric: str) -> dict[str, float]:
    """qid -> ``metric`` averaged over ``jobs`` (one setting's seeds): what its paired tests compare."""
    per_query: dict[str, list[float]] = defaultdict(list)
    for job in jobs:
        for qid, v in job["per_query"][metric].items():
            per_query[qid].append(v)
    return {q: float(np.mean(v)) for q, v in per_query.items()}


def summarize(sweep_dir: str | Path, metrics: list[str] | None = None, reference: int = 0,
              test: str = "t", fmt: str = "markdown") -> str:
    jobs = finished_jobs(sweep_dir)
    metrics = metrics or list(jobs[0]["metrics"])
    varying = [k for k in dict.fromkeys(k for j in jobs for k in j["settings"])
               if len({j["settings"].get(k) for j in jobs}) > 1 and k != "seed"]
    groups: dict[str, list[dict]] = defaultdict(list)
    for job in jobs:
        label = ", ".join(f"{k}={job['settings'].get(k, '-')}" for k in varying) or job["stage"]
        groups[label].append(job)
    labels = list(groups)
    rows: dict[str, dict[str, float]] = {}
    spread: dict[str, dict[str, float | None]] = {}
    for label, members in groups.items():
        rows[label] = {m: float(np.mean([j["metrics"][m] for j in members])) for m in metrics}
        spread[label] = {m: seed_spread(j["metrics"][m] for j in members) for m in metrics}
    table = metrics_table(rows, metrics, fmt=fmt, first_column="setting")
    lines = [table]
    if any(len(g) > 1 for g in groups.values()):
        def shown(label, m):
            n = len(groups[label])
            if spread[label][m] is None:
                return f"{m} no spread ({n} seed)"
            return f"{m} ±{spread[label][m]:.4f} ({n} seeds)"
        lines.append("\nsample std over seeds (ddof=1): " + "; ".join(
            f"{label}: " + ", ".join(shown(label, m) for m in metrics[:1]) for label in labels))
    if len(labels) > 1 and test != "none":
        ref = labels[reference]
        main = metrics[0]
        # seeds are averaged per query before testing
        others = [label for label in labels if label != ref]
        raw = [paired_test(seed_mean_per_query(groups[ref], main), seed_mean_per_query(groups[o], main), test=test)
               for o in others]
        lines.append(f"\npaired {test}-test on {main} against [{ref}], Holm-corrected over {len(others)} comparisons:")
        for label, p, p_holm in zip(others, raw, holm(raw)):
            delta = rows[label][main] - rows[ref][main]
            lines.append(f"- {label}: {delta:+.4f} (p={p:.4g}, Holm p={p_holm:.4g})")
    return "\n".join(lines)


def _job_order(path: Path):
    name = path.parent.name
    return (0, int(name)) if name.isdigit() else (1, name)


# ------------------------------------------------------------------------------- model x loss (RankT5 Table 1)

#: how a reranker's family (and variant) and a loss are named in the RankT5 paper's Table 1
MODEL_NAMES = {("monot5", None): "monoT5", ("rankt5", "encdec"): "RankT5-EncDec", ("rankt5", "enc"): "RankT5-Enc",
               ("cross_encoder", None): "BERT"}
LOSS_NAMES = {"pointwise_ce": "PointCE", "pairwise_logistic": "Pair", "softmax": "Softmax", "poly1": "Poly1"}
MODEL_ORDER = ["BERT", "monoT5", "RankT5-EncDec", "RankT5-Enc"]
#: monoT5 trained with the pointwise loss on logit(true) - logit(false): its true/false generation loss taken over
#: those two words (the paper's "Generation" normalises over the whole vocabulary)
GENERATION = "Generation (true/false)"


def _model_and_loss(job_dir: Path) -> tuple[str, str]:
    """(model, loss) of a finished job, from the config.yaml the pipeline wrote (the reranker stage's own
    ``train.loss`` when it has one, else the loss group); monoT5 trained with the pointwise loss is the paper's
    "Generation" (its true/false loss)."""
    cfg = yaml.safe_load((job_dir / "config.yaml").read_text())
    reranker = cfg.get("reranker") or {}
    family = str(reranker.get("family") or reranker.get("name"))
    variant = reranker.get("variant") if family == "rankt5" else None
    model = MODEL_NAMES.get((family, variant), f"{family}" + (f"-{variant}" if variant else ""))
    loss_cfg = (reranker.get("train") or {}).get("loss") or cfg.get("loss") or {}
    loss = str(loss_cfg.get("name"))
    if model == "monoT5" and loss == "pointwise_ce":
        return model, GENERATION
    return model, LOSS_NAMES.get(loss, loss)


def model_loss_table(sweep_dirs, metrics=("mrr@10", "ndcg@5", "ndcg@10", "map"), reference=("monoT5", GENERATION),
                     test: str = "t", alpha: float = 0.05, fmt: str = "markdown") -> str:
    """The layout of RankT5's Table 1 from finished sweep folders: a row per (model, loss) of the jobs' last stage
    (mean over seeds when a setting ran with several), the given metrics, and a dagger on a value whose paired test
    against the ``reference`` row (per query, seeds averaged) gives p <= ``alpha`` with the row better, as in the
    paper (uncorrected; the Holm-corrected p of the first metric is listed under the table)."""
    jobs = finished_jobs(sweep_dirs)
    metrics = list(metrics)
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for job in jobs:
        missing = [m for m in metrics if m not in job["metrics"]]
        if missing:
            raise KeyError(f"{job['dir']}: metrics {missing} were not computed; run the sweep with "
                           f"eval.metrics=[{','.join(metrics)}] (the rankt5_table1 experiment preset does)")
        groups[_model_and_loss(job["dir"])].append(job)

    def order(key):
        model, loss = key
        losses = [GENERATION, *LOSS_NAMES.values()]
        return (MODEL_ORDER.index(model) if model in MODEL_ORDER else len(MODEL_ORDER), model,
                losses.index(loss) if loss in losses else len(losses), loss)

    keys = sorted(groups, key=order)

    means = {k: {m: float(np.mean([j["metrics"][m] for j in groups[k]])) for m in metrics} for k in keys}
    ref = tuple(reference) if tuple(reference) in groups else None
    marks: dict[tuple, dict[str, str]] = {k: {m: "" for m in metrics} for k in keys}
    pvals: dict[tuple, dict[str, float]] = {}
    if ref is not None and test != "none":
        for k in keys:
            if k == ref:
                continue
            pvals[k] = {m: paired_test(seed_mean_per_query(groups[ref], m), seed_mean_per_query(groups[k], m),
                                       test=test) for m in metrics}
            for m in metrics:
                if pvals[k][m] <= alpha and means[k][m] > means[ref][m]:
                    marks[k][m] = "†"
    header = ["Model", "Loss", *[m.replace("ndcg", "NDCG").replace("mrr", "MRR").replace("map", "MAP")
                                 for m in metrics], "seeds"]
    best = {m: max(means[k][m] for k in keys) for m in metrics}

    def cell(k, m):
        text = f"{means[k][m]:.4f}{marks[k][m]}"
        if fmt == "markdown" and len(keys) > 1 and round(means[k][m], 4) == round(best[m], 4):
            return f"**{text}**"
        if fmt == "latex":
            text = text.replace("†", "$^\\dagger$")
            return f"\\textbf{{{text}}}" if len(keys) > 1 and round(means[k][m], 4) == round(best[m], 4) else text
        return text

    rows = [[k[0], k[1], *[cell(k, m) for m in metrics], str(len(groups[k]))] for k in keys]
    if fmt == "latex":
        lines = ["\\begin{tabular}{ll" + "r" * (len(metrics) + 1) + "}", "\\toprule", " & ".join(header) + " \\\\",
                 "\\midrule", *[" & ".join(r) + " \\\\" for r in rows], "\\bottomrule", "\\end{tabular}"]
    else:
        widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
        fmt_row = (lambda r: "| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths)) + " |")
        lines = [fmt_row(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *[fmt_row(r) for r in rows]]
    n_queries = len(next(iter(jobs))["per_query"][metrics[0]])
    if any(k[1] == GENERATION for k in keys):
        lines.append(f"\n{GENERATION}: monoT5 trained with loss=pointwise_ce on logit(true) - logit(false), i.e. its "
                     "true/false loss over those two words (the paper's softmax runs over the whole vocabulary)")
    if ref is None:
        lines.append(f"\nno {reference[0]} / {reference[1]} row: no significance marks")
    elif test != "none":
        lines.append(f"\n† paired {test}-test against {ref[0]} ({ref[1]}) over {n_queries} queries, p <= {alpha}, "
                     f"row better (uncorrected, as the paper). Holm-corrected p on {metrics[0]}:")
        others = [k for k in keys if k != ref]
        for k, p_holm in zip(others, holm([pvals[k][metrics[0]] for k in others])):
            lines.append(f"- {k[0]} {k[1]}: {means[k][metrics[0]] - means[ref][metrics[0]]:+.4f} "
                         f"(p={pvals[k][metrics[0]]:.4g}, Holm p={p_holm:.4g})")
    return "\n".join(lines)
