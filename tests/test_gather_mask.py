"""``gather_with_grad`` gathers a mask with token-level embeddings: padding never wins a MaxSim.

A real 2-process gloo group (``torch.multiprocessing``, as ``tests/test_ddp.py``): rank 0 holds token
embeddings ``[2, 3, d]``, rank 1 ``[2, 5, d]`` (its own mask drops two tokens of its second doc), and every real
similarity to the queries is negative, so the zero vectors rank 0's docs are padded with would win an unmasked
MaxSim. The masked MaxSim over the gathered tensor, and the gradient each rank gets back, are compared with a
plain Python loop over the un-padded per-rank tensors in one process.
"""

from __future__ import annotations

import pytest
import torch

from retrieval_lab.training.modules import pad_with_mask
from tests.conftest import free_port

DIM = 4
ROWS = {0: (2, 3), 1: (2, 5)}  # rank -> (docs, tokens)


def _data():
    """Per rank: a query [DIM] (positive entries), docs [n, T, DIM] (negative entries), the rank's own token
    mask [n, T], and the loss weights of its query's MaxSims over all 4 docs."""
    g = torch.Generator().manual_seed(0)
    out = {}
    for rank, (n, t) in ROWS.items():
        query = torch.rand(DIM, generator=g) + 0.1
        docs = -(torch.rand(n, t, DIM, generator=g) + 0.1)
        mask = torch.ones(n, t, dtype=torch.bool)
        if rank == 1:
            mask[1, 3:] = False  # the rank's own padding (e.g. a shorter doc)
        weights = torch.arange(1.0, 5.0) * (rank + 1)
        out[rank] = (query, docs, mask, weights)
    return out


def _worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from retrieval_lab.training.modules import gather_with_grad

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        query, docs, mask, weights = _data()[rank]
        x = docs.clone().requires_grad_(True)
        gathered, gathered_mask = gather_with_grad(x, None if rank == 0 else mask)
        sims = gathered @ query  # [4, T_max]
        maxsim = sims.masked_fill(~gathered_mask, float("-inf")).max(dim=1).values
        unmasked = sims.detach().max(dim=1).values  # what a mask-less gather would give
        (weights * maxsim).sum().backward()
        torch.save({"gathered": gathered.detach(), "mask": gathered_mask, "maxsim": maxsim.detach(),
                    "unmasked": unmasked, "grad": x.grad}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def _reference():
    """One process, un-padded tensors, plain loops: MaxSims per (query rank, doc) and the gradient of the sum of
    both ranks' losses w.r.t. each rank's docs."""
    data = _data()
    leaves = {r: data[r][1].clone().requires_grad_(True) for r in data}
    docs = [(r, i) for r in sorted(data) for i in range(ROWS[r][0])]  # gathered order: rank 0's, then rank 1's
    maxsims = {}
    total = 0.0
    for qr, (query, _, _, weights) in data.items():
        row = []
        for k, (r, i) in enumerate(docs):
            tokens = [leaves[r][i, t] for t in range(ROWS[r][1]) if data[r][2][i, t]]
            best = tokens[0] @ query
            for tok in tokens[1:]:
                s = tok @ query
                best = s if s > best else best
            row.append(best)
            total = total + weights[k] * best
        maxsims[qr] = torch.stack(row).detach()
    total.backward()
    return maxsims, {r: leaves[r].grad for r in leaves}


def test_gathered_mask_keeps_padding_out_of_maxsim_and_grads_match_one_process(tmp_path):
    import torch.multiprocessing as mp

    out = str(tmp_path / "gather")
    # fork where there is one: the children inherit the imported modules (0.2 s here; spawn re-imports torch and
    # Lightning in each child: 30 s on a busy 2-core machine). The children only use gloo and tiny tensors.
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(_worker, args=(2, free_port(), out), nprocs=2, join=True, start_method=method)
    got = {r: torch.load(f"{out}.{r}", weights_only=False) for r in (0, 1)}
    maxsims, grads = _reference()
    data = _data()
    expected_mask = [[True] * 3 + [False] * 2] * 2 + [[True] * 5, [True] * 3 + [False] * 2]
    for r in (0, 1):
        g = got[r]
        # both ranks' docs, rank order, padded to 5 tokens with zeros; mask False on all padding
        assert g["gathered"].shape == (4, 5, DIM) and g["mask"].dtype == torch.bool
        assert g["mask"].tolist() == expected_mask
        assert torch.equal(g["gathered"][:2, :3], data[0][1]) and torch.equal(g["gathered"][2:], data[1][1])
        assert not g["gathered"][:2, 3:].any()
        # masked MaxSim == the loop over un-padded tensors; every one is negative
        torch.testing.assert_close(g["maxsim"], maxsims[r], rtol=0, atol=1e-6)
        assert bool((g["maxsim"] < 0).all())
        # without the mask the zero padding (similarity 0) would win for rank 0's docs
        assert g["unmasked"][:2].tolist() == [0.0, 0.0]
        # each rank's docs get the gradient of both ranks' losses (all_gather's backward)
        torch.testing.assert_close(g["grad"], grads[r], rtol=1e-6, atol=1e-6)
    # by hand: MaxSim's gradient goes to the winning token only, weight * query summed over the query ranks;
    # rank 0's doc 0 is column 0 (weights 1 and 2)
    q0, q1 = data[0][0], data[1][0]
    d0 = data[0][1][0]
    win0, win1 = int((d0 @ q0).argmax()), int((d0 @ q1).argmax())
    expected = torch.zeros(3, DIM)
    expected[win0] += 1.0 * q0
    expected[win1] += 2.0 * q1
    torch.testing.assert_close(got[0]["grad"][0], expected)
    # rank 1's masked-out tokens get no gradient
    assert not got[1]["grad"][1, 3:].any()


def test_pad_with_mask_pads_every_dim_and_the_mask_with_false():
    x = torch.arange(24.0).view(2, 3, 4).requires_grad_(True)
    padded, mask = pad_with_mask(x, [3, 5, 4])
    assert padded.shape == (3, 5, 4) and mask.shape == (3, 5) and mask.dtype == torch.bool
    assert mask.tolist() == [[True] * 3 + [False] * 2] * 2 + [[False] * 5]
    assert torch.equal(padded[:2, :3], x.detach()) and not padded[2].any() and not padded[:, 3:].any()
    (padded * torch.arange(60.0).view(3, 5, 4)).sum().backward()  # the gradient of the real part goes back
    assert torch.equal(x.grad, torch.arange(60.0).view(3, 5, 4)[:2, :3])
    # a given mask keeps its False entries; an equal shape is no padding
    own = torch.tensor([[True, True, False], [True, False, False]])
    _, mask = pad_with_mask(x.detach(), [2, 4, 4], own)
    assert mask.tolist() == [[True, True, False, False], [True, False, False, False]]
    same, mask = pad_with_mask(x.detach(), [2, 3, 4], own)
    assert torch.equal(same, x.detach()) and torch.equal(mask, own)
    # single vectors [n, dim] have a mask [n]; so has a 1-d tensor
    padded, mask = pad_with_mask(torch.ones(2, 4), [3, 4])
    assert mask.tolist() == [True, True, False] and padded.sum().item() == 8.0
    assert pad_with_mask(torch.ones(2), [4])[1].tolist() == [True, True, False, False]
    with pytest.raises(ValueError, match="cannot pad"):
        pad_with_mask(x, [1, 3, 4])
    with pytest.raises(ValueError, match="mask of shape"):
        pad_with_mask(x, [2, 3, 4], torch.ones(2, 4, dtype=torch.bool))
