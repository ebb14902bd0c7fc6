"""The one batched-inference loop every family uses (encoding queries/documents, scoring pairs).

    out = batched_inference(model, texts, lambda batch: model.encode(model.tokenize_docs(batch)).embeddings,
                            batch_size=64, precision="bf16", show_progress=True, desc="documents")

* batches of similar length, longest first (:func:`~retrieval_lab.models.backbone.length_sorted_batches`:
  ColBERT 3.4, little compute is spent on padding, and an out-of-memory error shows in the first batch);
* eval mode for the call (the caller's mode is restored after), ``torch.inference_mode`` and autocast for
  ``precision`` (:func:`~retrieval_lab.models.backbone.inference_context`);
* results scattered back to the input order: one float32 CPU tensor ``[n, ...]`` (``stack=True``), or one entry
  per item (``stack=False``: e.g. token embeddings of different lengths, trimmed by the caller's ``run_batch``);
* a tqdm bar over items.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from retrieval_lab.models.backbone import inference_context, length_sorted_batches

__all__ = ["batched_inference"]


def _device(module: nn.Module) -> torch.device:
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def batched_inference(
    module: nn.Module,
    items: Sequence[Any],
    run_batch: Callable[[list[Any]], Any],
    *,
    batch_size: int,
    precision: str = "fp32",
    key: Callable[[Any], int] | None = None,
    show_progress: bool = False,
    desc: str = "batches",
    stack: bool = True,
) -> torch.Tensor | list[Any]:
    """Run ``run_batch(list of items)`` over ``items`` in length-sorted batches; results in input order.

    ``run_batch`` returns a tensor whose first dimension is the batch (``stack=True``: gathered into one float32
    CPU tensor ``[len(items), ...]``, which needs every batch's trailing shape to match) or any sequence with one
    entry per item (``stack=False``: a list). ``key`` gives an item's length (``len`` by default: characters of
    a text, a cheap proxy for tokens).
    """
    n = len(items)
    if n == 0:
        return torch.empty(0, dtype=torch.float32) if stack else []
    out: torch.Tensor | None = None
    listed: list[Any] = [None] * n
    was_training = module.training
    module.eval()
    try:
        with inference_context(precision, _device(module)), \
                tqdm(total=n, desc=desc, unit="item", disable=not show_progress) as bar:
            for idx in length_sorted_batches(items, batch_size, key=key):
                result = run_batch([items[i] for i in idx])
                if len(result) != len(idx):
                    raise ValueError(f"run_batch returned {len(result)} results for a batch of {len(idx)}")
                if stack:
                    result = result.detach().to("cpu", torch.float32)
                    if out is None:
                        with torch.inference_mode(False):  # a plain tensor the caller may use in autograd
                            out = torch.empty((n, *result.shape[1:]), dtype=torch.float32)
                    elif tuple(result.shape[1:]) != tuple(out.shape[1:]):
                        raise ValueError(f"run_batch changed its output shape: {tuple(result.shape[1:])} after "
                                         f"{tuple(out.shape[1:])}; use stack=False for ragged outputs")
                    out[idx] = result
                else:
                    for j, i in enumerate(idx):
                        listed[i] = result[j]
                bar.update(len(idx))
    finally:
        module.train(was_training)
    return out if stack else listed
