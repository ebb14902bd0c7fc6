"""The data layer: collections (documents, queries, qrels per split), TREC files, runs.

`load_collection(cfg)` is the entry point the pipeline uses; it picks a loader by ``cfg.loader``:

=============  ==========================================================================================
``embedded``   the packaged BEIR-layout folder ``retrieval_lab/data/embedded/<path or name>/``
``beir``       a local BEIR-layout folder: ``cfg.path``, or ``$RETRIEVAL_LAB_DATA/<cfg.local_dir>``;
               falls back to ir_datasets when that folder is absent and an ir_datasets id is configured
``ir_datasets`` the same local-first lookup, then ``cfg.ir_datasets_splits`` / ``cfg.ir_datasets_id``
``trec``       TREC files: the corpus ``cfg.path`` (or ``cfg.corpus_path``), topics ``cfg.topics`` (or
               ``cfg.topics_path``), qrels ``cfg.qrels`` (or ``cfg.qrels_path``: a file, or a mapping split ->
               file), optional ``cfg.topic_field``, ``cfg.runs`` (name -> file). A relative path is taken under
               ``$RETRIEVAL_LAB_DATA`` when it exists there, else as given (working directory). A single
               qrels file is the split ``cfg.splits[0]`` if one split is given, else ``cfg.test_split``, else "test".
=============  ==========================================================================================

Fields read from ``cfg`` (any object with attributes: a dataclass or an OmegaConf DictConfig; missing
optional fields default): ``name``, ``loader``, ``path``, ``local_dir``, ``ir_datasets_id``,
``ir_datasets_splits``, ``rel_threshold`` (1), ``splits`` (default: all the collection has), ``unknown_docs``
("keep": judgments of documents outside the corpus are kept, see `read_qrels`), ``max_unknown_query_share``
(0.05: above this share of judged queries missing from the topics, loading stops).

A BEIR-layout folder (``beir``, ``embedded``) may hold a ``collection.yaml`` with its own ``name``,
``rel_threshold`` and ``default_run`` (see `retrieval_lab.data.beir`). Its ``rel_threshold`` is used unless the
config sets one (``dataset.rel_threshold``, null by default), which wins.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from retrieval_lab.data.beir import load_beir
from retrieval_lab.data.collection import Collection, Corpus, Doc
from retrieval_lab.data.errors import DATA_HINT, CollectionError, DataWarning
from retrieval_lab.data.irds import load_ir_datasets
from retrieval_lab.data.runs import Run, cut, ranked, read_trec_run, write_trec_run
from retrieval_lab.data.trec import MAX_UNKNOWN_QUERY_SHARE, load_trec, read_qrels, read_topics

__all__ = [
    "Doc", "Corpus", "Collection", "CollectionError", "DataWarning", "Run",
    "load_beir", "load_trec", "load_ir_datasets", "read_topics", "read_qrels",
    "read_trec_run", "write_trec_run", "cut", "ranked",
    "load_collection", "LOADERS", "EMBEDDED_ROOT", "DATA_ENV", "data_root",
]

DATA_ENV = "RETRIEVAL_LAB_DATA"
EMBEDDED_ROOT = Path(__file__).resolve().parent / "embedded"


def data_root() -> Path | None:
    """``$RETRIEVAL_LAB_DATA`` as a path, or None when unset/empty."""
    value = os.environ.get(DATA_ENV)
    return Path(value).expanduser() if value else None


def load_collection(cfg: Any) -> Collection:
    """Load the collection ``cfg`` describes (see the module docstring for the fields)."""
    name = _get(cfg, "name")
    loader = _get(cfg, "loader", "beir")
    if not name and not (loader in ("beir", "ir_datasets") and _get(cfg, "path")):  # a folder names itself
        raise CollectionError("dataset config has no `name` (set dataset.name)")
    try:
        load = LOADERS[loader]
    except KeyError:
        raise CollectionError(f"dataset {name!r}: unknown loader {loader!r}; choose one of {sorted(LOADERS)}") from None
    return load(cfg)


# -- loaders ---------------------------------------------------------------------------------------------------


def _load_embedded(cfg: Any) -> Collection:
    name = _get(cfg, "name")
    folder = EMBEDDED_ROOT / (_get(cfg, "path") or name)
    if not folder.is_dir():
        available = sorted(p.name for p in EMBEDDED_ROOT.iterdir() if p.is_dir()) if EMBEDDED_ROOT.is_dir() else []
        raise CollectionError(f"no embedded collection {name!r}: {folder} not found (embedded: {available})")
    return load_beir(folder, name=name, splits=_splits(cfg), rel_threshold=_folder_threshold(cfg),
                     unknown_docs=_get(cfg, "unknown_docs", "keep"), max_unknown_query_share=_max_share(cfg))


def _load_local_or_ir_datasets(cfg: Any) -> Collection:
    """Local BEIR folder first (``path``, or ``$RETRIEVAL_LAB_DATA/<local_dir>``), then ir_datasets, else an error."""
    name = _get(cfg, "name")
    rel_threshold = _get(cfg, "rel_threshold", 1)
    unknown_docs = _get(cfg, "unknown_docs", "keep")
    max_share = _max_share(cfg)
    splits = _splits(cfg)
    path = _get(cfg, "path")
    beir_options = dict(name=name, splits=splits, rel_threshold=_folder_threshold(cfg), unknown_docs=unknown_docs,
                        max_unknown_query_share=max_share)
    if path:  # an explicit folder must exist: no silent fallback
        return load_beir(path, **beir_options)

    local_dir = _get(cfg, "local_dir")
    folder = None
    if local_dir:
        local = Path(local_dir).expanduser()
        root = data_root()
        folder = local if local.is_absolute() else (root / local if root is not None else None)
        if folder is not None and folder.is_dir():
            return load_beir(folder, **beir_options)

    ir_splits = _plain(_get(cfg, "ir_datasets_splits"))
    ir_id = _get(cfg, "ir_datasets_id")
    if ir_splits or ir_id:
        if ir_splits and splits is not None:
            missing = [s for s in splits if s not in ir_splits]
            if missing:
                raise CollectionError(f"dataset {name!r}: splits {missing} have no entry in ir_datasets_splits "
                                      f"({sorted(ir_splits)})")
            ir_splits = {s: ir_splits[s] for s in splits}
        split = splits[0] if (not ir_splits and splits and len(splits) == 1) else None
        try:
            return load_ir_datasets(ir_id, splits=ir_splits or None, split=split, name=name,
                                    rel_threshold=rel_threshold, unknown_docs=unknown_docs)
        except CollectionError as e:
            if not local_dir:
                raise
            raise CollectionError(f"dataset {name!r}: local folder not found: {_looked_for(local_dir, folder)}; "
                                  f"the ir_datasets fallback failed too: {e}") from e

    if local_dir:
        raise CollectionError(f"dataset {name!r}: folder not found: {_looked_for(local_dir, folder)}, and no "
                              f"ir_datasets id is configured. {DATA_HINT}")
    raise CollectionError(f"dataset {name!r}: set `path` or `local_dir` (a BEIR-layout folder) or an "
                          f"ir_datasets id. {DATA_HINT}")


def _looked_for(local_dir: str, folder: Path | None) -> str:
    if folder is None:
        return f"$RETRIEVAL_LAB_DATA/{local_dir} (RETRIEVAL_LAB_DATA is not set)"
    root = data_root()
    return f"{folder} (RETRIEVAL_LAB_DATA={root})" if root is not None else str(folder)


def _load_trec_files(cfg: Any) -> Collection:
    name = _get(cfg, "name")
    corpus = _get(cfg, "corpus_path") or _get(cfg, "path")
    topics = _get(cfg, "topics_path") or _get(cfg, "topics")
    qrels = _plain(_get(cfg, "qrels_path") or _get(cfg, "qrels"))
    missing = [f for f, v in (("path (the corpus file)", corpus), ("topics", topics), ("qrels", qrels)) if not v]
    if missing:
        raise CollectionError(f"dataset {name!r}: the trec loader needs {', '.join(missing)}")
    root = data_root()

    def resolve(p: str) -> Path:
        p = Path(p).expanduser()
        if not p.is_absolute() and root is not None and (root / p).exists():
            return root / p
        return p

    splits = _splits(cfg)
    if isinstance(qrels, dict):
        qrels = {str(s): resolve(q) for s, q in qrels.items()}
        if splits is not None:
            absent = [s for s in splits if s not in qrels]
            if absent:
                raise CollectionError(f"dataset {name!r}: splits {absent} have no entry in qrels ({sorted(qrels)})")
            qrels = {s: qrels[s] for s in splits}
        split = "test"
    else:
        qrels = resolve(qrels)
        split = splits[0] if splits and len(splits) == 1 else (_get(cfg, "test_split") or "test")
    runs = _plain(_get(cfg, "runs")) or {}
    return load_trec(
        resolve(corpus), resolve(topics), qrels, name=name, split=split,
        rel_threshold=_get(cfg, "rel_threshold", 1), topic_field=_get(cfg, "topic_field", "title"),
        runs={k: resolve(v) for k, v in runs.items()}, unknown_docs=_get(cfg, "unknown_docs", "keep"),
        max_unknown_query_share=_max_share(cfg),
    )


#: loader name -> function(cfg) -> Collection
LOADERS: dict[str, Callable[[Any], Collection]] = {
    "embedded": _load_embedded,
    "beir": _load_local_or_ir_datasets,
    "ir_datasets": _load_local_or_ir_datasets,
    "trec": _load_trec_files,
}


# -- cfg access --------------------------------------------------------------------------------------------------


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    if isinstance(cfg, dict):
        value = cfg.get(key, default)
    else:
        try:
            value = getattr(cfg, key)
        except AttributeError:  # includes OmegaConf's ConfigAttributeError in struct mode
            value = default
        except Exception as e:  # a mandatory value left unset (`???`) reads as absent
            if type(e).__name__ != "MissingMandatoryValue":
                raise
            value = default
    return default if value is None else value


def _folder_threshold(cfg: Any) -> int | None:
    """The config's relevance threshold for a folder loader: None (unset: the folder's collection.yaml, else 1), or
    the value the config sets, which wins over the folder's."""
    return _get(cfg, "rel_threshold", None)


def _max_share(cfg: Any) -> float:
    value = _get(cfg, "max_unknown_query_share", MAX_UNKNOWN_QUERY_SHARE)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise CollectionError(f"dataset.max_unknown_query_share must be a number in [0, 1], got {value!r}")
    return float(value)


def _plain(value: Any) -> Any:
    if type(value).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(value, resolve=True)
    return value


def _splits(cfg: Any) -> list[str] | None:
    splits = _plain(_get(cfg, "splits"))
    if splits is None:
        return None
    return [splits] if isinstance(splits, str) else [str(s) for s in splits]
