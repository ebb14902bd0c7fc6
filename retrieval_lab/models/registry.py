"""Which class loads a saved model: the family registry.

Every checkpoint this project saves carries ``retrieval_lab.json`` naming its family
(:func:`~retrieval_lab.models.backbone.write_family`). :func:`load_family` reads it and returns the
right class's ``from_pretrained``; a plain backbone (no family file: a Hub name, a
sentence-transformers folder) is loaded as the family the config asks for.

Adding a family: one file in ``retrieval_lab/models/`` (an ``nn.Module`` with ``family``, ``roles``,
``SETTINGS``, ``from_pretrained``, ``save_pretrained`` and the methods of the protocol of each role it
plays, :mod:`retrieval_lab.models.protocols`), one line in :data:`FAMILIES`, one schema in
``retrieval_lab/config.py``, one yaml in ``conf/retriever/`` or ``conf/reranker/``.
"""

from __future__ import annotations

import os
from importlib import import_module
from typing import Any

from retrieval_lab.models.backbone import (
    FAMILY_FILE,
    BackboneError,
    FamilyMismatchError,
    read_family,
    resolve_backbone,
)

__all__ = ["FAMILIES", "ROLES", "family_class", "load_family", "load_for_stage", "families_for", "settings_from_config"]

ROLES = ("retriever", "reranker")

#: family name -> "module:Class". The class says which roles it can play (``roles``).
FAMILIES: dict[str, str] = {
    "biencoder": "retrieval_lab.models.biencoder:BiEncoder",
    "cross_encoder": "retrieval_lab.models.cross_encoder:CrossEncoder",
    "colbert": "retrieval_lab.models.colbert:ColBERT",
    "rankt5": "retrieval_lab.models.rankt5:RankT5",
    "monot5": "retrieval_lab.models.rankt5:MonoT5",
}


def family_class(name: str) -> type:
    """The class registered for family ``name``; a ``ValueError`` listing the known ones otherwise."""
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; known families: {sorted(FAMILIES)}")
    module, cls = FAMILIES[name].split(":")
    return getattr(import_module(module), cls)


def families_for(role: str) -> list[str]:
    """Names of the families that can play ``role`` ("retriever" or "reranker")."""
    return [name for name in FAMILIES if role in family_class(name).roles]


def load_family(path: str | os.PathLike[str], role: str, family: str | None = None, **settings: Any) -> Any:
    """Load the model saved at ``path`` with its own family's class, to play ``role``.

    * ``path`` holds a ``retrieval_lab.json``: its family decides the class. When ``family`` (what the
      config expects) is given and differs, :class:`FamilyMismatchError` names both.
    * no family file (a plain backbone or Hub name): loaded as ``family``, which is then required.
    * the family cannot play ``role``: :class:`BackboneError` listing the families that can.

    ``settings`` (``None`` = not set) override the saved ones, as each ``from_pretrained`` documents.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    resolved = resolve_backbone(path)
    meta = read_family(resolved) if os.path.isdir(resolved) else None
    saved = meta["family"] if meta else None
    if saved is not None and saved not in FAMILIES:
        raise BackboneError(f"{resolved!r} was saved by family {saved!r}, which this version does not know "
                            f"(known: {sorted(FAMILIES)})")
    if saved is not None and family is not None and saved != family:
        raise FamilyMismatchError(
            f"{os.fspath(path)!r} is a {saved!r} checkpoint, but the config asks for a {family!r} {role}. "
            f"Use the {saved!r} {role} preset, or point the config at a {family!r} checkpoint or a plain backbone."
        )
    name = saved or family
    if name is None:
        raise BackboneError(f"{os.fspath(path)!r} has no {FAMILY_FILE} naming its family: say which family "
                            f"to load it as (one of {sorted(FAMILIES)})")
    cls = family_class(name)
    if role not in cls.roles:
        raise BackboneError(f"family {name!r} cannot be a {role} (it plays {list(cls.roles)}); "
                            f"{role} families: {families_for(role)}")
    return cls.from_pretrained(resolved, **settings)


def settings_from_config(family: str, cfg: Any) -> dict[str, Any]:
    """The family's settings (``SETTINGS``) that the stage config ``cfg`` sets (``None`` = the model's own)."""
    cls = family_class(family)
    return {k: cfg.get(k) for k in cls.SETTINGS if cfg.get(k) is not None}


def load_for_stage(path: str | os.PathLike[str], role: str, cfg: Any) -> Any:
    """What a model-backed stage loads: ``path`` as ``cfg.family`` (checked against the folder's own family), with
    the family's settings the stage config sets."""
    family = str(cfg.family)
    return load_family(path, role, family=family, **settings_from_config(family, cfg))
