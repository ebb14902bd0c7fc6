"""A TREC run file as the first stage (e.g. TREC DL 2019's bundled BM25 top-100).

The ranking is evaluated as given: documents the corpus lacks stay in their places (non-relevant unless judged,
counted in a warning), so the documents below them do not move up. A re-ranker cannot score such documents
(it has no text for them).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from retrieval_lab.data.errors import DataWarning
from retrieval_lab.data.runs import cut, read_trec_run
from retrieval_lab.retrievers.base import Retriever


class RunFileRetriever(Retriever):
    def _path(self) -> Path:
        if self.cfg.path:
            return Path(self.cfg.path).expanduser()
        collection = self.ctx.collection
        name = self.ctx.cfg.dataset.get("default_run") or getattr(collection, "default_run", None)
        if not name or name not in collection.runs:
            raise ValueError(
                f"retriever=run needs a TREC run file: set retriever.path=<file>, or dataset.default_run=<name> "
                f"to use a bundled run; dataset {collection.name!r} has no bundled run"
                f"{'' if not name else f' named {name!r}'} (bundled: {sorted(collection.runs)})"
            )
        return Path(collection.runs[name])

    @property
    def name(self) -> str:
        return f"run:{self._path().stem}"

    def retrieve(self, split: str) -> dict[str, dict[str, float]]:
        collection = self.ctx.collection
        judged = collection.qrels[split]  # a run's ranking of a query is kept even when its text is blank
        path = self._path()
        full = read_trec_run(path, known_docs=collection.corpus)
        self._check_query_ids(path, full, judged, split)
        run = {qid: docs for qid, docs in full.items() if qid in judged}
        if not run:
            raise ValueError(f"{path}: names none of the {len(judged)} {split} queries of {collection.name}")
        return cut(run, int(self.cfg.k))

    def _check_query_ids(self, path: Path, run, judged, split: str) -> None:
        """Judged queries the run does not rank score 0: when the run's ids look like the topics' written another
        way ('1' for '01'), say so with examples, and stop above ``dataset.max_unknown_query_share``."""
        from retrieval_lab.data.trec import MAX_UNKNOWN_QUERY_SHARE, unknown_query_examples

        collection = self.ctx.collection
        unranked = [q for q in judged if q not in run]
        foreign = sorted(q for q in run if q not in collection.queries)
        if not unranked and not foreign:
            return
        share = len(unranked) / max(len(judged), 1)
        limit = self.ctx.cfg.dataset.get("max_unknown_query_share")
        limit = MAX_UNKNOWN_QUERY_SHARE if limit is None else float(limit)
        what = (f"{path}: {len(unranked)} of the {len(judged)} judged {split} queries have no ranking in it "
                f"({share:.0%}; they score 0)")
        if foreign:
            what += (f", and it ranks {len(foreign)} queries the topics do not have, "
                     f"{unknown_query_examples(foreign, collection.queries)}")
        if foreign and share > limit:
            raise ValueError(f"{what}. Fix the query ids of the run (or of the topics), or raise "
                             f"dataset.max_unknown_query_share (now {limit:g}) above {share:.2f}")
        warnings.warn(what + (f"; e.g. {unranked[:3]}" if unranked else ""), DataWarning, stacklevel=2)
