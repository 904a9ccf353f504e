"""Shared fixtures: random graphs with isolated nodes, and padded/unpadded sentence batches."""

from __future__ import annotations

import pytest
import torch


def random_graph(num_nodes: int, num_edges: int, seed: int = 0, isolated: int = 2) -> torch.Tensor:
    """Random ``edge_index`` over ``num_nodes`` nodes whose last ``isolated`` nodes receive no edge."""
    gen = torch.Generator().manual_seed(seed)
    source = torch.randint(0, num_nodes, (num_edges,), generator=gen)
    target = torch.randint(0, max(num_nodes - isolated, 1), (num_edges,), generator=gen)
    return torch.stack([source, target])


def sentence_batch(lengths: list[int], d_model: int, seed: int = 0):
    """``(padded [B, L, D], padding_mask [B, L], tokens [N, D], batch [N])`` for sequences of ``lengths``."""
    gen = torch.Generator().manual_seed(seed)
    padded = torch.randn(len(lengths), max(lengths), d_model, generator=gen)
    padding_mask = torch.arange(max(lengths))[None] >= torch.tensor(lengths)[:, None]
    padded = padded.masked_fill(padding_mask.unsqueeze(-1), 0.0)
    tokens = padded[~padding_mask]
    batch = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    return padded, padding_mask, tokens, batch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(12345)
