"""Second stages: each re-scores the top-``depth`` of a first stage's Run."""

from retrieval_lab.rerankers.base import Reranker

__all__ = ["Reranker"]
