"""A TREC run file as the first stage (e.g. TREC DL 2019's bundled BM25 top-100)."""

from __future__ import annotations

from pathlib import Path

from retrieval_lab.data.runs import cut, read_trec_run
from retrieval_lab.retrievers.base import Retriever


class RunFileRetriever(Retriever):
    def _path(self) -> Path:
        if self.cfg.path:
            return Path(self.cfg.path).expanduser()
        collection = self.ctx.collection
        name = self.ctx.cfg.dataset.get("default_run")
        if not name or name not in collection.runs:
            raise ValueError(
                f"retriever=run needs retriever.path=<TREC run file>: dataset {collection.name!r} "
                f"has no bundled run{'' if not name else f' named {name!r}'} (bundled: {sorted(collection.runs)})"
            )
        return Path(collection.runs[name])

    @property
    def name(self) -> str:
        return f"run:{self._path().stem}"

    def retrieve(self, split: str) -> dict[str, dict[str, float]]:
        collection = self.ctx.collection
        topics = collection.topics(split)
        run = read_trec_run(self._path(), known_queries=set(collection.queries), known_docs=collection.corpus)
        run = {qid: docs for qid, docs in run.items() if qid in topics}
        if not run:
            raise ValueError(f"{self._path()}: names none of the {len(topics)} {split} queries of {collection.name}")
        return cut(run, int(self.cfg.k))
