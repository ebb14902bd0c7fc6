"""The one model-backed first stage: [train] -> encode the corpus once (cached) -> index (cached) -> search.

Any retriever family of the registry (:mod:`retrieval_lab.models.registry`) runs through this class; the family's
``index_kind`` picks how its documents are indexed (:data:`INDEX_KINDS`: one vector per document in FAISS; one
vector per token in a token store, searched end to end or exhaustively). Every artifact is cached under a key of
what it depends on:

* trained model: see :mod:`retrieval_lab.training.stages` (hard negatives keyed by the first stage's run content);
* encoded corpus: the model's content, the corpus content, the model's resolved settings, precision, storage dtype;
* FAISS index: the encoded corpus's key and the index's build settings (factory, metric, faiss version); the
  search-time settings (``nprobe``, ``ef_search``) are applied after loading, so every value shares one index;
* token store: as the encoded corpus; its IVFPQ: the store's key and the build settings (partitions, sub-vectors,
  metric, training sample and seed, faiss version); ``nprobe`` and ``k'`` are search-time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from retrieval_lab.cache import KEY_VERSION, fingerprint, model_fingerprint
from retrieval_lab.indexes.base import cached_index, folder_bytes
from retrieval_lab.retrievers.base import Retriever, build_stage

log = logging.getLogger(__name__)


class ModelRetriever(Retriever):
    """A first stage backed by a retriever family (``cfg.family``: biencoder, ...)."""

    role = "retriever"

    def __init__(self, cfg, ctx):
        super().__init__(cfg, ctx)
        self._model = None
        self._model_path: str | None = None
        self._index = None

    # ----------------------------------------------------------------------------------- model
    def load_model(self, path: str):
        from retrieval_lab.models.registry import load_for_stage

        return load_for_stage(path, self.role, self.cfg)

    @property
    def model_path(self) -> str:
        if self._model_path is None:
            from retrieval_lab.models.backbone import resolve_backbone

            path = resolve_backbone(self.cfg.model)
            self._model_path = self._train(path) if self.cfg.train.enabled else str(path)
        return self._model_path

    @property
    def model(self):
        if self._model is None:
            self._model = self.load_model(self.model_path)
            self._model.eval()
        return self._model

    def _train(self, backbone: str) -> str:
        from retrieval_lab.training.stages import train_retriever, train_split

        t = self.cfg.train
        run, run_name = None, "-"
        if not t.get("triples") and t.num_hard_negatives > 0:
            split = train_split(self.ctx, self.cfg, "retriever")
            negatives = build_stage(self.cfg.negatives, self.ctx)
            negatives.prepare()
            run, run_name = negatives.retrieve(split), negatives.name
        return train_retriever(self.cfg, self.ctx, backbone, self.load_model, run, run_name)

    @property
    def precision(self) -> str:
        return str(self.ctx.hardware.inference_precision)

    # ----------------------------------------------------------------------------------- index
    @property
    def index(self):
        if self._index is None:
            kind = getattr(self.model, "index_kind", None)
            if kind not in INDEX_KINDS:
                raise ValueError(f"family {self.cfg.family!r} asks for index kind {kind!r}; known: {sorted(INDEX_KINDS)}")
            self._index = INDEX_KINDS[kind](self)
        return self._index

    def prepare(self) -> None:
        self.index  # noqa: B018 (loads or trains the model, encodes the corpus, builds or loads the index)

    def retrieve(self, split: str) -> dict[str, dict[str, float]]:
        index = self.index
        topics = self.ctx.collection.topics(split)
        qids = list(topics)
        start = time.perf_counter()
        q = self.model.encode_queries(
            [topics[qid] for qid in qids], batch_size=int(self.cfg.batch_size), precision=self.precision,
            show_progress=False,
        )
        encode_s = time.perf_counter() - start
        reported = split == self.ctx.cfg.dataset.test_split  # a training split is searched for negatives only
        if isinstance(q, list):  # one [Tq_i, dim] tensor per query (token-level families)
            run = index.search_run(qids, q, int(self.cfg.k), oracle=reported)
        else:
            q = np.ascontiguousarray(q.float().numpy() if hasattr(q, "numpy") else q, dtype=np.float32)
            run = index.search_run(qids, q, int(self.cfg.k))
        stats = dict(getattr(index, "stats", None) or {}) if reported else {}
        if stats:  # latency split and candidate recall (multi-vector search) -> efficiency.json
            ms = {"encode": round(1000 * encode_s / max(len(qids), 1), 3), **stats.pop("ms_per_query_split", {})}
            # the search's own latency (the stage's "seconds" also covers the oracle comparison, when made)
            self.ctx.record_search(self, search_ms_per_query=round(sum(ms.values()), 3), ms_per_query_split=ms,
                                   **stats)
            log.info("%s search: %s", self.name, {"ms_per_query": ms, **stats})
        return run


# --------------------------------------------------------------------------------------- index kinds


def single_vector_index(stage: ModelRetriever):
    """One vector per document: encode the corpus (cached), then a FAISS index over it (cached)."""
    from retrieval_lab.indexes.dense_cache import encode_corpus
    from retrieval_lab.indexes.faiss_index import FaissIndex

    ctx, cfg, model = stage.ctx, stage.cfg, stage.model
    corpus = ctx.collection.corpus
    # the model's content and resolved settings (pooling, similarity -> normalisation, segment ids, lengths)
    emb_key = fingerprint("encoded-corpus", KEY_VERSION, model_fingerprint(stage.model_path), corpus.fingerprint, model.family,
                          model.settings, stage.precision, cfg.embeddings_dtype)
    ids = corpus.ids()
    embeddings = encode_corpus(
        lambda texts: model.encode_docs(texts, batch_size=len(texts), precision=stage.precision, show_progress=False),
        ids, [doc.contents() for doc in corpus], cache_dir=ctx.cache_dir / "embeddings", key=emb_key,
        batch_size=int(cfg.batch_size), dtype=cfg.embeddings_dtype, show_progress=ctx.show_progress,
    )
    idx = cfg.index
    use_gpu = bool(ctx.hardware.faiss_gpu)

    def build() -> FaissIndex:  # saved without search-time settings: faiss's defaults unless the config sets them
        log.info("%s: building a FAISS %s index over %d vectors", stage.name, idx.factory, len(ids))
        return FaissIndex(factory=idx.factory, metric=idx.metric, use_gpu=use_gpu).build(
            np.ascontiguousarray(embeddings, dtype=np.float32), ids)

    def load(path) -> FaissIndex:
        log.info("%s: reusing the FAISS index at %s", stage.name, path)
        return FaissIndex.load(path, use_gpu=use_gpu)

    import faiss

    index_key = fingerprint("faiss", KEY_VERSION, emb_key, idx.factory, idx.metric, faiss.__version__)
    path = ctx.cache_dir / "faiss" / index_key
    index, hit = cached_index(path, build, load)
    index.set_search_params(nprobe=idx.nprobe, ef_search=idx.ef_search)  # this run's search-time settings
    ctx.record_index(stage, kind="faiss", hit=hit, nbytes=folder_bytes(path / "index"), docs=len(ids))
    return index


def token_store_for(stage):
    """The stage's model's token store (:mod:`retrieval_lab.indexes.token_store`), built once and cached under the
    model's content, the corpus's content, the model's resolved settings, the inference precision and the storage
    dtype. Used by the multi-vector first stage and by a multi-vector re-ranker (``stage``: either; it has ``ctx``,
    ``cfg``, ``model``, ``model_path`` and ``precision``)."""
    from retrieval_lab.indexes.base import cached_folder
    from retrieval_lab.indexes.token_store import TokenStore

    ctx, cfg, model = stage.ctx, stage.cfg, stage.model
    corpus = ctx.collection.corpus
    dtype = str(cfg.embeddings_dtype)
    key = fingerprint("token-store", KEY_VERSION, model_fingerprint(stage.model_path), corpus.fingerprint,
                      model.family, model.settings, stage.precision, dtype)
    path = ctx.cache_dir / "token_store" / key

    def write(folder):
        ids = corpus.ids()
        log.info("%s: encoding %d documents into a %s token store", stage.name, len(ids), dtype)
        manifest = TokenStore.write(
            folder, ids, [doc.contents() for doc in corpus],
            lambda texts: model.encode_docs(texts, batch_size=int(cfg.batch_size), precision=stage.precision,
                                            show_progress=False),
            dim=int(model.dim), dtype=dtype, show_progress=ctx.show_progress,
            info={"family": model.family, "settings": model.settings, "precision": stage.precision})
        log.info("%s: token store of %d vectors (%.1f per document), %.1f documents/s", stage.name,
                 manifest["num_tokens"], manifest["num_tokens"] / max(manifest["num_docs"], 1),
                 manifest["docs_per_second"] or 0)

    store, hit = cached_folder(path, write, TokenStore.load)
    if hit:
        log.info("%s: reusing the token store at %s", stage.name, path)
    bare = store.lengths <= 3  # [CLS], [D], [SEP] and nothing else
    if bare.any():
        log.warning("%s: %d documents have no content tokens (empty, or punctuation only; e.g. %r): only their "
                    "[CLS], [D] and [SEP] vectors are stored, and they are scored on those", stage.name,
                    int(bare.sum()), store.doc_ids[int(bare.argmax())])
    return store, hit, path


def multi_vector_index(stage: ModelRetriever):
    """One vector per token: the token store (cached), then end-to-end IVFPQ search over it or exhaustive MaxSim
    (:mod:`retrieval_lab.indexes.multi_vector`; ``cfg.search``)."""
    from retrieval_lab.indexes.base import cached_index
    from retrieval_lab.indexes.multi_vector import MultiVectorIndex, TokenIVF

    ctx, cfg, model = stage.ctx, stage.cfg, stage.model
    store, hit, store_path = token_store_for(stage)
    s = cfg.search
    ivf, ivf_hit, ivf_bytes = None, True, 0
    if s.mode == "end_to_end":
        import faiss

        metric = "l2" if model.similarity == "l2" else "ip"
        ivf_key = fingerprint("token-ivfpq", KEY_VERSION, store_path.name, s.partitions, s.subvectors, metric,
                              s.train_size, ctx.cfg.seed, faiss.__version__)
        ivf_path = ctx.cache_dir / "token_ivf" / ivf_key

        def build():
            log.info("%s: building IVFPQ over %d token vectors", stage.name, store.num_tokens)
            return TokenIVF.build(store, partitions=int(s.partitions), subvectors=int(s.subvectors), metric=metric,
                                  train_size=s.train_size, seed=int(ctx.cfg.seed), show_progress=ctx.show_progress)

        ivf, ivf_hit = cached_index(ivf_path, build, TokenIVF.load)
        for note in ivf.settings.get("notes", []):
            log.warning("%s: IVFPQ %s", stage.name, note)
        ivf_bytes = folder_bytes(ivf_path / "index")
    index = MultiVectorIndex(store, ivf, mode=str(s.mode), similarity=model.similarity,
                             interaction=model.interaction, nprobe=int(s.nprobe), candidates=int(s.candidates),
                             oracle_max_docs=int(s.oracle_max_docs))
    ctx.record_index(stage, kind=f"token_store+{'ivfpq' if ivf else 'exhaustive'}", hit=hit and ivf_hit,
                     nbytes=folder_bytes(store_path / "index") + ivf_bytes, docs=len(store))
    manifest = store.manifest
    ctx.record_search(stage, store_bytes=store.nbytes(), store_dtype=manifest["dtype"], ivf_bytes=ivf_bytes,
                      token_vectors=store.num_tokens, indexing_docs_per_second=manifest.get("docs_per_second"),
                      ram_bytes_for_search=index.ram_bytes())
    return index


#: index kind (a retriever family's ``index_kind``) -> builder taking the stage
INDEX_KINDS: dict[str, Callable[[ModelRetriever], Any]] = {"single_vector": single_vector_index,
                                                           "multi_vector": multi_vector_index}
