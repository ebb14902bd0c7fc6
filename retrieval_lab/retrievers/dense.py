"""Dense first stage (RepBERT bi-encoder): [train] -> encode the corpus once (cached) -> FAISS index -> search."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from retrieval_lab.cache import fingerprint
from retrieval_lab.indexes.dense_cache import encode_corpus
from retrieval_lab.indexes.faiss_index import FaissIndex
from retrieval_lab.retrievers.base import Retriever, build_stage

log = logging.getLogger(__name__)


def model_fingerprint(path: str | Path) -> str:
    """Content hash of a model folder's weights and config (a retrained checkpoint never reuses stale caches)."""
    from retrieval_lab.cache import file_digest

    folder = Path(path)
    files = sorted(
        p for p in folder.glob("*") if p.suffix in {".safetensors", ".bin", ".json", ".txt", ".model"}
    )
    if not files:
        return fingerprint(str(path))
    return fingerprint(*[(p.name, file_digest(p)) for p in files])


class BiEncoderRetriever(Retriever):
    def __init__(self, cfg, ctx):
        super().__init__(cfg, ctx)
        self._model = None
        self._model_path: str | None = None
        self._index: FaissIndex | None = None

    # ----------------------------------------------------------------------------------- model
    @property
    def model(self):
        if self._model is None:
            from retrieval_lab.models.backbone import resolve_backbone

            path = resolve_backbone(self.cfg.model)
            if self.cfg.train.enabled:
                path = self._train(path)
            self._model_path = str(path)
            self._model = self.load_model(path)
            self._model.eval()
        return self._model

    def load_model(self, path: str):
        from retrieval_lab.models import BiEncoder

        return BiEncoder.from_pretrained(
            path,
            pooling=self.cfg.pooling,
            similarity=self.cfg.similarity,
            segment_ids=self.cfg.segment_ids,
            query_max_length=self.cfg.query_max_length,
            doc_max_length=self.cfg.doc_max_length,
        )

    def _train(self, path: str) -> str:
        from retrieval_lab.training.stages import train_retriever

        negatives = build_stage(self.cfg.negatives, self.ctx) if self.cfg.train.num_hard_negatives > 0 else None
        return train_retriever(self.cfg, self.ctx, path, negatives, self.load_model)

    @property
    def precision(self) -> str:
        return str(self.ctx.hardware.inference_precision)

    # ----------------------------------------------------------------------------------- index
    @property
    def index(self) -> FaissIndex:
        if self._index is None:
            corpus = self.ctx.collection.corpus
            model = self.model
            # the model's resolved settings (pooling, similarity -> normalisation, segment ids, lengths)
            key = fingerprint(
                "biencoder", model_fingerprint(self._model_path), corpus.fingerprint, model.settings,
                self.precision, self.cfg.embeddings_dtype,
            )
            ids = corpus.ids()
            embeddings = encode_corpus(
                lambda texts: model.encode_docs(texts, batch_size=len(texts), precision=self.precision, show_progress=False),
                ids,
                [doc.contents() for doc in corpus],
                cache_dir=self.ctx.cache_dir / "embeddings",
                key=key,
                batch_size=int(self.cfg.batch_size),
                dtype=self.cfg.embeddings_dtype,
                show_progress=self.ctx.show_progress,
            )
            idx = self.cfg.index
            self._index = FaissIndex(
                factory=idx.factory, metric=idx.metric, use_gpu=bool(self.ctx.hardware.faiss_gpu),
                nprobe=idx.nprobe, ef_search=idx.ef_search,
            )
            self._index.build(np.ascontiguousarray(embeddings, dtype=np.float32), ids)
        return self._index

    def prepare(self) -> None:
        self.index  # noqa: B018 (loads or trains the model, encodes the corpus, builds the index)

    def retrieve(self, split: str) -> dict[str, dict[str, float]]:
        index = self.index
        topics = self.ctx.collection.topics(split)
        qids = list(topics)
        q = self.model.encode_queries(
            [topics[qid] for qid in qids], batch_size=int(self.cfg.batch_size), precision=self.precision,
            show_progress=False,
        )
        q = np.ascontiguousarray(q.float().numpy() if hasattr(q, "numpy") else q, dtype=np.float32)
        return index.search_run(qids, q, int(self.cfg.k))
