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


def summarize(sweep_dir: str | Path, metrics: list[str] | None = None, reference: int = 0,
              test: str = "t", fmt: str = "markdown") -> str:
    jobs = [load_job(p.parent) for p in sorted(Path(sweep_dir).glob("*/metrics.json"), key=_job_order)]
    if not jobs:
        raise FileNotFoundError(f"{sweep_dir}: no finished job (no */metrics.json)")
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
        def per_query(label):
            qs = defaultdict(list)
            for job in groups[label]:
                for qid, v in job["per_query"][main].items():
                    qs[qid].append(v)
            return {q: float(np.mean(v)) for q, v in qs.items()}
        others = [label for label in labels if label != ref]
        raw = [paired_test(per_query(ref), per_query(o), test=test) for o in others]
        lines.append(f"\npaired {test}-test on {main} against [{ref}], Holm-corrected over {len(others)} comparisons:")
        for label, p, p_holm in zip(others, raw, holm(raw)):
            delta = rows[label][main] - rows[ref][main]
            lines.append(f"- {label}: {delta:+.4f} (p={p:.4g}, Holm p={p_holm:.4g})")
    return "\n".join(lines)


def _job_order(path: Path):
    name = path.parent.name
    return (0, int(name)) if name.isdigit() else (1, name)
