"""A TREC run file as the first stage (e.g. TREC DL 2019's bundled BM25 top-100).

The ranking is evaluated as given: documents the corpus lacks stay in their places (non-relevant unless judged,
counted in a warning), so the documents below them do not move up. A re-ranker cannot score such documents
(it has no text for them).
"""

from __future__ import annotations

from pathlib import Path

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
        run = read_trec_run(self._path(), known_queries=set(collection.queries), known_docs=collection.corpus)
        run = {qid: docs for qid, docs in run.items() if qid in judged}
        if not run:
            raise ValueError(f"{self._path()}: names none of the {len(judged)} {split} queries of {collection.name}")
        return cut(run, int(self.cfg.k))
