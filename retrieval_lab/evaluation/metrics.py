"""Evaluate a run against graded qrels through ranx, with trec_eval's conventions.

Conventions (checked against pytrec_eval, where it has the metric, in ``tests/test_evaluation.py``):

- **Graded metrics** (``ndcg``, ``ndcg_burges``, ``dcg``, ``dcg_burges``, ``rbp``) use the grades as gains,
  every grade >= 1 counting, whatever ``rel_threshold`` is (trec_eval's ``ndcg_cut`` ignores
  ``relevance_level`` the same way). TREC DL 2019's official nDCG@10 is computed like this.
- **Binary metrics** (``mrr``, ``map``, ``recall``, ``precision``, ``hit_rate``, ``hits``, ``f1``,
  ``r-precision``) count a document as relevant when its grade >= ``rel_threshold``. We pass ranx
  its own ``metric-lN`` level, which filters the judgments exactly so (``map-l2`` == trec_eval ``-l 2 map``).
  Do not write ``ndcg@10-l2``: ranx then drops the grade-1 documents from the gains *and* the ideal ranking,
  which is not trec_eval's nDCG (0.4252 instead of 0.5058 on DL19 BM25); an explicit ``-lN`` is passed as is.
  ``bpref`` is refused: ranx 0.3.21 gets it silently wrong as soon as one query has no relevant document.
- **Graded qrels at threshold 1**: a `DataWarning` notice says so when a binary metric is asked for (the
  convention of a collection such as TREC DL is 2; `dataset.rel_threshold` or a folder's ``collection.yaml``).
- **Queries**: the evaluated queries are those of ``qrels`` with at least one judgment. A query judged but
  missing from the run (or with an empty ranking) scores 0 on every metric and counts in the mean, as with
  ``trec_eval -c``; queries in the run but not in the qrels are ignored. A judged query with no relevant
  document scores 0.
- **Ties**: documents with equal scores are ordered as trec_eval orders them (higher doc id first, by string
  comparison). ranx alone breaks ties by insertion order, so we hand it a ranking with the ties resolved.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from retrieval_lab.data.runs import ranked

Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Mapping[str, float]]

DEFAULT_METRICS = ("ndcg@10", "mrr@10", "map", "recall@100", "recall@1000")

GRADED_METRICS = ("ndcg", "ndcg_burges", "dcg", "dcg_burges", "rbp")
BINARY_METRICS = ("mrr", "map", "recall", "precision", "hit_rate", "hits", "f1", "r-precision")
_NO_CUTOFF = ("r-precision",)  # ranx ignores a cutoff for it: refuse one rather than mislead
# ranx 0.3.21's bpref divides by zero for a query with no relevant (or no judged non-relevant) document, and
# inside its parallel loop that silently leaves 0 for that query and every later one (checked against trec_eval).
_REFUSED = {"bpref": "ranx's bpref is silently wrong when a query has no relevant or no judged non-relevant "
                     "document (it returns 0 for that query and all later ones), so it is not offered"}

_NAME = re.compile(r"^(?P<base>[a-z_-]+?)(?:@(?P<k>\d+))?(?:-l(?P<lvl>\d+))?$")
_RBP = re.compile(r"^rbp[.@](?P<p>\d+)(?:-l(?P<lvl>\d+))?$")
_TREC_EVAL_HINTS = {
    "ndcg_cut": "ndcg@k",
    "recip_rank": "mrr or mrr@k",
    "p": "precision@k",
    "recall_": "recall@k",
    "map_cut": "map@k",
    "success": "hit_rate@k",
    "rprec": "r-precision",
}


def _valid_names_message() -> str:
    return (
        "valid metrics (ranx names): "
        + ", ".join(f"{m}@k" if m not in _NO_CUTOFF else m for m in BINARY_METRICS + GRADED_METRICS[:-1])
        + ", rbp.95 (persistence); a cutoff @k is optional (none = the whole ranking), "
        "e.g. ndcg@10, mrr@10, map, recall@1000, precision@5"
    )


@dataclass(frozen=True)
class _Metric:
    name: str  # as the caller wrote it: the key in the results
    base: str
    ranx_name: str  # what ranx is asked for


def parse_metric(name: str, rel_threshold: int = 1) -> _Metric:
    """Check a ranx metric name and say how ranx must compute it; ValueError listing valid names otherwise."""
    if not isinstance(name, str):
        raise ValueError(f"metric names are strings, got {name!r}; {_valid_names_message()}")
    rbp = _RBP.match(name)
    if rbp:
        return _Metric(name, "rbp", name)
    match = _NAME.match(name)
    base = match.group("base") if match else None
    if base in _REFUSED:
        raise ValueError(f"metric {name!r}: {_REFUSED[base]}; {_valid_names_message()}")
    if base not in BINARY_METRICS + GRADED_METRICS or base == "rbp":
        hint = next(
            (f" (did you mean {v}? this looks like a trec_eval name)"
             for k, v in _TREC_EVAL_HINTS.items() if name.lower().startswith(k)),
            "",
        )
        if name != name.lower() and _NAME.match(name.lower()) and _NAME.match(name.lower()).group("base") in (
            BINARY_METRICS + GRADED_METRICS
        ):
            hint = f" (names are lower case: {name.lower()!r})"
        raise ValueError(f"unknown metric {name!r}{hint}; {_valid_names_message()}")
    k = match.group("k")
    if k is not None and int(k) < 1:
        raise ValueError(f"metric {name!r}: the cutoff must be >= 1 (leave it out for the whole ranking)")
    if k is not None and base in _NO_CUTOFF:
        raise ValueError(f"metric {name!r}: ranx computes {base} over the whole ranking; drop the @{k}")
    if match.group("lvl") is not None or base in GRADED_METRICS:
        return _Metric(name, base, name)
    return _Metric(name, base, f"{name}-l{rel_threshold}")


@dataclass
class EvalResult:
    """Scores of one run: ``aggregate[metric]`` is the mean of ``per_query[metric][qid]`` over the judged queries."""

    aggregate: dict[str, float]
    per_query: dict[str, dict[str, float]]
    rel_threshold: int = 1
    metrics: list[str] = field(default_factory=list)

    def __post_init__(self):
        if not self.metrics:
            self.metrics = list(self.aggregate)

    @property
    def num_queries(self) -> int:
        return len(next(iter(self.per_query.values()), {}))

    def to_dict(self) -> dict:
        return {
            "metrics": list(self.metrics),
            "rel_threshold": self.rel_threshold,
            "num_queries": self.num_queries,
            "aggregate": dict(self.aggregate),
            "per_query": {m: dict(v) for m, v in self.per_query.items()},
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> "EvalResult":
        d = json.loads(text)
        return cls(d["aggregate"], d["per_query"], d.get("rel_threshold", 1), d.get("metrics", []))


def _ranking_for_ranx(docs: Mapping[str, float] | None, qid: str) -> dict[str, float]:
    """Resolve ties as trec_eval does (score desc, then doc id desc) and encode the order as distinct scores."""
    if not docs:
        return {}
    try:
        items = ranked(docs)  # the project's one tie order (runs.ranked)
    except ValueError as err:
        raise ValueError(f"run for query {qid!r}: {err}") from None
    n = len(items)
    return {doc_id: float(n - i) for i, (doc_id, _) in enumerate(items)}


def evaluate(
    qrels: Qrels,
    run: Run,
    metrics: Iterable[str] | str = DEFAULT_METRICS,
    rel_threshold: int = 1,
) -> EvalResult:
    """Score ``run`` (qid -> docid -> score) against ``qrels`` (qid -> docid -> grade) with ranx.

    Graded metrics (nDCG, DCG, RBP) use the grades; binary ones count grade >= ``rel_threshold`` as relevant.
    Every query of ``qrels`` with a judgment counts in the means; one missing from the run scores 0.
    See the module docstring for the exact conventions (they are trec_eval's).
    """
    if isinstance(metrics, str):
        metrics = [metrics]
    metrics = list(metrics)
    if not metrics:
        raise ValueError(f"no metrics asked for; {_valid_names_message()}")
    if isinstance(rel_threshold, bool) or int(rel_threshold) != rel_threshold or rel_threshold < 1:
        raise ValueError(f"rel_threshold must be an integer >= 1, got {rel_threshold!r}")
    rel_threshold = int(rel_threshold)
    parsed = [parse_metric(m, rel_threshold) for m in metrics]
    if len(set(metrics)) != len(metrics):
        raise ValueError(f"metrics listed twice: {sorted({m for m in metrics if metrics.count(m) > 1})}")

    judged = {str(q): {str(d): int(g) for d, g in docs.items()} for q, docs in qrels.items() if docs}
    if not judged:
        raise ValueError("qrels hold no judgments")
    _notice_graded_at_threshold_1(judged, parsed, rel_threshold)
    ranked = {q: _ranking_for_ranx(run.get(q), q) for q in judged}

    if any(ranked.values()):
        per_query_arrays = _ranx_evaluate(judged, ranked, [p.ranx_name for p in parsed])
    else:  # nothing retrieved for any judged query (ranx cannot build an empty Run)
        order = sorted(judged)
        per_query_arrays = ({p.ranx_name: np.zeros(len(order)) for p in parsed}, order)
    arrays, order = per_query_arrays

    per_query = {p.name: {q: float(v) for q, v in zip(order, arrays[p.ranx_name])} for p in parsed}
    aggregate = {p.name: float(np.mean(arrays[p.ranx_name])) for p in parsed}
    return EvalResult(aggregate, per_query, rel_threshold, metrics)


def _notice_graded_at_threshold_1(judged: dict, parsed: list[_Metric], rel_threshold: int) -> None:
    """A `DataWarning` when graded qrels (a grade above 1) are evaluated with binary metrics at threshold 1: every
    grade >= 1 then counts as relevant, which is not the convention of collections such as TREC DL (2)."""
    if rel_threshold != 1:
        return
    binary = [p.name for p in parsed if p.base in BINARY_METRICS and p.ranx_name != p.name]
    if not binary:
        return
    top = max((g for docs in judged.values() for g in docs.values()), default=0)
    if top <= 1:
        return
    from retrieval_lab.data.errors import DataWarning

    warnings.warn(
        f"notice: the qrels are graded (grades up to {top}) and the binary metrics ({', '.join(binary)}) count every "
        f"grade >= 1 as relevant (relevance threshold 1). If the collection's convention is higher (TREC DL: 2), "
        "set dataset.rel_threshold (or eval.rel_threshold), or rel_threshold in the collection folder's "
        "collection.yaml; nDCG uses the grades either way",
        DataWarning,
        stacklevel=3,
    )


def _ranx_evaluate(qrels: dict, run: dict, ranx_names: list[str]) -> tuple[dict[str, np.ndarray], list[str]]:
    import ranx
    from numba.core.errors import NumbaTypeSafetyWarning

    with warnings.catch_warnings():
        # ranx hashes doc ids to uint64 and numba warns on the cast to int64 (harmless: only equality is used)
        warnings.simplefilter("ignore", NumbaTypeSafetyWarning)
        ranx_qrels = ranx.Qrels(qrels)
        ranx_run = ranx.Run(run)
        unique = list(dict.fromkeys(ranx_names))
        scores = ranx.evaluate(ranx_qrels, ranx_run, unique, return_mean=False)
    if len(unique) == 1:  # ranx returns the bare array for a single metric
        scores = {unique[0]: scores}
    # ranx sorts both by query id and returns the scores in that order
    order = list(ranx_qrels.get_query_ids())
    assert order == list(ranx_run.get_query_ids()) and set(order) == set(qrels)
    return {k: np.asarray(v, dtype=np.float64) for k, v in scores.items()}, order
