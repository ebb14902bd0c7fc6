"""Dense vector index over a corpus: any ``faiss.index_factory`` string behind one small API.

    idx = FaissIndex("HNSW32", metric="ip", ef_search=128).build(doc_emb, doc_ids)
    idx.search(query_emb, k=10)   # -> [[(doc_id, score), ...] best first, ...] one list per query
    idx.save("outputs/index/dense");  FaissIndex.load("outputs/index/dense")

Scores: for ``metric="ip"`` the inner product (cosine if the caller normalised the vectors);
for ``metric="l2"`` the NEGATED squared L2 distance, so for both metrics a higher score is
better and a result list is sorted by descending score, like every Run in this project.

Doc ids are kept as a Python list; faiss sees positional ids 0..n-1 (no ``IndexIDMap``,
which HNSW cannot take ids through anyway). Padding ids (-1, returned when fewer than k
vectors are reachable, e.g. k > n or a small nprobe) are dropped, so a list may be shorter
than k.

On disk (written atomically, a directory without ``_COMPLETE`` is refused by ``load``)::

    dir/index.faiss     faiss.write_index of the CPU index
    dir/ids.json        doc ids in faiss position order
    dir/settings.json   factory, metric, dim, search parameters, faiss version
    dir/_COMPLETE
"""

from __future__ import annotations

import gc
import json
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np

from retrieval_lab.cache import COMPLETE_MARKER, atomic_dir, is_complete

__all__ = ["FaissIndex", "MIN_POINTS_PER_CENTROID"]

#: faiss's k-means warns below this many training points per centroid (ClusteringParameters
#: .min_points_per_centroid); we refuse to train an IVF quantizer with fewer.
MIN_POINTS_PER_CENTROID = 39
_METRICS = {"ip": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}
_FORMAT_VERSION = 1


def _default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _as_matrix(x: Any, name: str) -> np.ndarray:
    """np.ndarray | torch.Tensor | nested lists -> C-contiguous float32 [n, d]."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch
        x = x.detach().float().cpu().numpy()
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D [n, d], got shape {x.shape}")
    return x


class FaissIndex:
    """A faiss index addressed by string doc ids.

    Args:
        factory: any ``faiss.index_factory`` string: ``"Flat"`` (exact), ``"HNSW32"``,
            ``"IVF1024,Flat"``, ``"IVF1024,PQ16"``, ``"OPQ16,IVF256,PQ16"``, ...
        metric: ``"ip"`` (inner product; normalise the vectors for cosine) or ``"l2"``.
        use_gpu: ``False``; ``True`` moves the built index to all GPUs with
            ``faiss.index_cpu_to_all_gpus`` and raises if faiss sees no GPU (CPU-only faiss
            installed, or no device); ``"auto"`` uses the GPUs when there are any and
            otherwise (or when the index type has no GPU version, e.g. HNSW) stays on CPU.
            Training and adding happen on CPU; the index moves afterwards.
        nprobe: IVF lists visited per query (faiss's default is 1: low recall).
        ef_search: HNSW candidate-list size at search time (faiss's default is 16). A search
            with k > ef_search runs with ef_search = k, as hnswlib does: faiss itself would
            return fewer than k results (padding) with poor recall.
        train_size: train on a random sample of this many vectors (default: all).
        threads: faiss OpenMP threads for build and search (default: all cores available
            to this process). faiss's setting is process-wide; it is applied before each call.
        seed: seed of the training sample.
    """

    def __init__(
        self,
        factory: str = "Flat",
        metric: Literal["ip", "l2"] = "ip",
        use_gpu: bool | Literal["auto"] = False,
        nprobe: int | None = None,
        ef_search: int | None = None,
        train_size: int | None = None,
        threads: int | None = None,
        seed: int = 0,
    ) -> None:
        if metric not in _METRICS:
            raise ValueError(f"metric must be 'ip' or 'l2', got {metric!r}")
        if use_gpu not in (True, False, "auto"):
            raise ValueError(f"use_gpu must be True, False or 'auto', got {use_gpu!r}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.factory = factory
        self.metric = metric
        self.use_gpu = use_gpu
        self.nprobe = nprobe
        self.ef_search = ef_search
        self.train_size = train_size
        self.threads = threads or _default_threads()
        self.seed = seed
        self.index: faiss.Index | None = None  # the raw faiss index (GPU one when on GPU)
        self.on_gpu = False
        self._hnsw = None
        self._ids: list[str] = []
        self._ids_arr = np.empty(0, dtype=object)

    # ------------------------------------------------------------------ properties
    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        return (f"FaissIndex({self.factory!r}, metric={self.metric!r}, n={len(self)}, "
                f"dim={self.dim}, gpu={self.on_gpu})")

    @property
    def doc_ids(self) -> list[str]:
        return list(self._ids)

    @property
    def dim(self) -> int | None:
        return None if self.index is None else self.index.d

    def _require_built(self) -> faiss.Index:
        if self.index is None:
            raise RuntimeError("FaissIndex is empty: call .build(embeddings, doc_ids) or .load(dir)")
        return self.index

    def cpu_index(self) -> faiss.Index:
        """The index on CPU (a copy when it lives on GPU)."""
        index = self._require_built()
        return faiss.index_gpu_to_cpu(index) if self.on_gpu else index

    def nbytes(self) -> int:
        """Size of the serialised faiss index (what ``save`` writes to index.faiss)."""
        return int(faiss.serialize_index(self.cpu_index()).size)

    def bytes_per_vector(self) -> float:
        return self.nbytes() / max(len(self), 1)

    # ------------------------------------------------------------------ build
    def build(self, embeddings: Any, doc_ids: list[str]) -> FaissIndex:
        """Create the index from ``self.factory``, train it if needed, add all vectors.

        ``embeddings`` is float32 ``[n, d]`` (row i is ``doc_ids[i]``). Returns self.
        """
        x = _as_matrix(embeddings, "embeddings")
        doc_ids = [str(i) for i in doc_ids]
        n, d = x.shape
        if n != len(doc_ids):
            raise ValueError(f"{n} embeddings but {len(doc_ids)} doc ids")
        if n == 0:
            raise ValueError("cannot build a FAISS index over zero vectors")
        if len(set(doc_ids)) != n:
            raise ValueError("doc_ids contain duplicates")
        faiss.omp_set_num_threads(self.threads)
        try:
            index = faiss.index_factory(d, self.factory, _METRICS[self.metric])
        except RuntimeError as e:
            raise ValueError(
                f"faiss cannot build index factory {self.factory!r} for dim {d}: "
                f"{str(e).splitlines()[-1]}"
            ) from e

        if not index.is_trained:
            train = x
            if self.train_size is not None and self.train_size < n:
                rng = np.random.default_rng(self.seed)
                train = x[np.sort(rng.choice(n, size=self.train_size, replace=False))]
            self._check_training_size(index, len(train), n)
            try:
                index.train(train)
            except RuntimeError as e:
                raise ValueError(
                    f"training FAISS index {self.factory!r} on {len(train)} vectors failed: "
                    f"{str(e).splitlines()[-1]}"
                ) from e
        index.add(x)
        self._ids = doc_ids
        self._ids_arr = np.array(doc_ids, dtype=object)
        self._set_index(index)
        return self

    def _check_training_size(self, index: faiss.Index, n_train: int, n: int) -> None:
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is None:
            return
        nlist = ivf.nlist
        need = MIN_POINTS_PER_CENTROID * nlist
        if n_train < need:
            max_nlist = max(n_train // MIN_POINTS_PER_CENTROID, 1)
            sampled = f" (train_size={self.train_size} of {n})" if n_train < n else ""
            hint = re.sub(rf"IVF{nlist}\b", f"IVF{max_nlist}", self.factory, count=1)
            raise ValueError(
                f"FAISS factory {self.factory!r} asks for {nlist} IVF lists but only "
                f"{n_train} vectors are available for training{sampled}; faiss's k-means needs "
                f"about {MIN_POINTS_PER_CENTROID} points per list ({need} here). Use a smaller "
                f"nlist (at most {max_nlist}, e.g. {hint!r}), or 'Flat'/'HNSW32' for a "
                "collection this small."
            )

    # ------------------------------------------------------------------ device / params
    def _set_index(self, index: faiss.Index) -> None:
        """Install a CPU index: move it to GPU if asked, apply search parameters."""
        self.on_gpu = False
        if self.use_gpu:
            n_gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
            if n_gpus == 0 or not hasattr(faiss, "GpuParameterSpace"):
                if self.use_gpu is True:
                    raise RuntimeError(
                        "FaissIndex(use_gpu=True) but faiss sees no GPU (faiss.get_num_gpus() "
                        f"== {n_gpus}): the installed faiss is the CPU build or there is no CUDA "
                        "device. Install the GPU faiss instead of the CPU one (`pip uninstall "
                        "faiss-cpu && pip install -e '.[gpu]'`) on a CUDA machine, or use "
                        "use_gpu=False / 'auto'."
                    )
            else:
                try:
                    index = faiss.index_cpu_to_all_gpus(index)
                    self.on_gpu = True
                except RuntimeError as e:  # e.g. HNSW has no GPU implementation
                    if self.use_gpu is True:
                        raise RuntimeError(
                            f"faiss cannot move {self.factory!r} to GPU: "
                            f"{str(e).splitlines()[-1]}") from e
                    warnings.warn(f"{self.factory!r} stays on CPU: no GPU version ({e})",
                                  stacklevel=3)
        self.index = index
        # a bare HNSW index (not IVF-with-HNSW-quantizer): its efSearch is raised to k per call
        self._hnsw = index.hnsw if isinstance(index, faiss.IndexHNSW) else None
        self.set_search_params(nprobe=self.nprobe, ef_search=self.ef_search)

    def set_search_params(self, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Change ``nprobe`` (IVF) / ``ef_search`` (HNSW) of a built index; None keeps it."""
        index = self._require_built()
        space = faiss.GpuParameterSpace() if self.on_gpu else faiss.ParameterSpace()
        for name, faiss_name, value in (("nprobe", "nprobe", nprobe),
                                        ("ef_search", "efSearch", ef_search)):
            if value is None:
                continue
            try:
                space.set_index_parameter(index, faiss_name, value)
            except RuntimeError as e:
                kind = "an IVF" if name == "nprobe" else "an HNSW"
                raise ValueError(
                    f"{name}={value} needs {kind} index, but factory {self.factory!r} has none"
                ) from e
            setattr(self, name, value)

    # ------------------------------------------------------------------ search
    def search_parameters(self, k: int) -> faiss.SearchParameters | None:
        """Per-call faiss parameters for a top-k search: for HNSW with efSearch < k,
        efSearch = k; otherwise None (the index's own settings apply)."""
        if self._hnsw is not None and self._hnsw.efSearch < k:
            params = faiss.SearchParametersHNSW()
            params.efSearch = k
            return params
        return None

    def search_arrays(self, query_emb: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw search: (scores float32 [m, k], positions int64 [m, k]), best first.

        Positions index ``doc_ids``; -1 marks padding. Scores follow the class convention
        (inner product, or negated squared L2 distance).
        """
        index = self._require_built()
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        q = _as_matrix(query_emb, "query_emb")
        if q.shape[1] != index.d:
            raise ValueError(f"query dim {q.shape[1]} != index dim {index.d}")
        faiss.omp_set_num_threads(self.threads)
        params = self.search_parameters(k)
        scores, pos = index.search(q, k) if params is None else index.search(q, k, params=params)
        if self.metric == "l2":
            np.negative(scores, out=scores)
        return scores, pos

    def search(self, query_emb: Any, k: int) -> list[list[tuple[str, float]]]:
        """Top-k per query: one list of ``(doc_id, score)`` per row of ``query_emb``, best
        first. Fewer than k entries when faiss finds fewer (k > n, IVF with small nprobe)."""
        scores, pos = self.search_arrays(query_emb, k)
        valid = pos >= 0
        # Building m*k tuples is the only Python-level cost; the cyclic GC would otherwise
        # scan the young tuples every few hundred allocations (~40% of the conversion time).
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            if valid.all():
                id_rows = self._ids_arr[pos].tolist()
                return [list(zip(ids, sc)) for ids, sc in zip(id_rows, scores.tolist())]
            out = []
            for p, s, v in zip(pos, scores, valid):
                out.append(list(zip(self._ids_arr[p[v]].tolist(), s[v].tolist())))
            return out
        finally:
            if gc_was_enabled:
                gc.enable()

    def search_run(self, qids: list[str], query_emb: Any, k: int) -> dict[str, dict[str, float]]:
        """Top-k as a Run (qid -> doc id -> score) for ``qids[i]`` = row i of ``query_emb``.

        Same results as ``search``, built straight into dicts (no intermediate tuple lists)."""
        scores, pos = self.search_arrays(query_emb, k)
        if len(qids) != len(scores):
            raise ValueError(f"{len(qids)} qids but {len(scores)} query embeddings")
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            valid = pos >= 0
            if valid.all():
                id_rows = self._ids_arr[pos].tolist()
                return {qid: dict(zip(ids, sc))
                        for qid, ids, sc in zip(qids, id_rows, scores.tolist())}
            return {qid: dict(zip(self._ids_arr[p[v]].tolist(), s[v].tolist()))
                    for qid, p, s, v in zip(qids, pos, scores, valid)}
        finally:
            if gc_was_enabled:
                gc.enable()

    # ------------------------------------------------------------------ persistence
    def settings(self) -> dict[str, Any]:
        return {
            "format_version": _FORMAT_VERSION,
            "factory": self.factory,
            "metric": self.metric,
            "dim": self.dim,
            "ntotal": len(self),
            "nprobe": self.nprobe,
            "ef_search": self.ef_search,
            "train_size": self.train_size,
            "seed": self.seed,
            "faiss_version": faiss.__version__,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the index to directory ``path`` atomically; a complete index already at
        ``path`` is replaced only once the new one is fully written."""
        cpu = self.cpu_index()
        path = Path(path)
        replace = is_complete(path)
        # cache.atomic_dir keeps an existing complete directory (right for cache keys); to
        # overwrite, finish the new index under a sibling name, then swap the two.
        final = path.with_name(f".{path.name}.new-{os.getpid()}") if replace else path
        with atomic_dir(final) as tmp:
            faiss.write_index(cpu, str(tmp / "index.faiss"))
            (tmp / "ids.json").write_text(json.dumps(self._ids))
            (tmp / "settings.json").write_text(json.dumps(self.settings(), indent=2))
        if replace:
            trash = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
            os.replace(path, trash / "index")
            os.replace(final, path)
            shutil.rmtree(trash, ignore_errors=True)
        return path

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        use_gpu: bool | Literal["auto"] = False,
        threads: int | None = None,
        nprobe: int | None = None,
        ef_search: int | None = None,
    ) -> FaissIndex:
        """Read an index written by ``save``. ``nprobe``/``ef_search`` override the saved ones."""
        path = Path(path)
        if not is_complete(path):
            raise FileNotFoundError(
                f"{path} is not a complete FAISS index directory (no {COMPLETE_MARKER} marker): "
                "it was never saved or its save was interrupted; build and save it again"
            )
        settings = json.loads((path / "settings.json").read_text())
        if settings.get("format_version") != _FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported index format {settings.get('format_version')}")
        self = cls(
            factory=settings["factory"],
            metric=settings["metric"],
            use_gpu=use_gpu,
            nprobe=nprobe if nprobe is not None else settings.get("nprobe"),
            ef_search=ef_search if ef_search is not None else settings.get("ef_search"),
            train_size=settings.get("train_size"),
            threads=threads,
            seed=settings.get("seed", 0),
        )
        ids = json.loads((path / "ids.json").read_text())
        index = faiss.read_index(str(path / "index.faiss"))
        if index.ntotal != len(ids):
            raise ValueError(f"{path}: index holds {index.ntotal} vectors but {len(ids)} ids")
        self._ids = ids
        self._ids_arr = np.array(ids, dtype=object)
        self._set_index(index)
        return self
