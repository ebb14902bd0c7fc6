"""Indexes: one interface per kind (build, search, save, load) over the libraries behind them.

Only the BM25 names are imported here (cheap); import dense indexes from their modules.
"""

from retrieval_lab.indexes.bm25 import BM25Index
from retrieval_lab.indexes.tokenize import Tokenizer

__all__ = ["BM25Index", "Tokenizer"]
