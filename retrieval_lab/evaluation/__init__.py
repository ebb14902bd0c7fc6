"""Evaluation through ranx (trec_eval conventions), result tables and files, paired significance tests."""

from retrieval_lab.evaluation.metrics import (
    BINARY_METRICS,
    DEFAULT_METRICS,
    GRADED_METRICS,
    EvalResult,
    evaluate,
    parse_metric,
)
from retrieval_lab.evaluation.report import metrics_table, paired_test, write_metrics

__all__ = [
    "BINARY_METRICS",
    "DEFAULT_METRICS",
    "GRADED_METRICS",
    "EvalResult",
    "evaluate",
    "metrics_table",
    "paired_test",
    "parse_metric",
    "write_metrics",
]
