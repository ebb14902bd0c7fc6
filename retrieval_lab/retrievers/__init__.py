"""First stages: each turns a collection's topics into a Run (qid -> docid -> score).

Stages are built from their config node: ``_target_`` names the class, which takes ``(cfg, ctx)``.
"""

from retrieval_lab.retrievers.base import Retriever, build_stage

__all__ = ["Retriever", "build_stage"]
