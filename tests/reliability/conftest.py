"""Shared pieces of the reliability tests: one small instance of every layer, random graphs."""

from __future__ import annotations

import torch

from graphformer import AttentionConv, GATConv, GraphConv, GraphTransformer, GraphTransformerLayer

DIM = 8

#: name -> factory of a small layer in eval mode (dropout off), input and output width DIM (GAT: 2 heads x 4).
LAYERS = {
    "graphconv-sum": lambda: GraphConv(DIM, DIM, aggr="sum"),
    "graphconv-mean": lambda: GraphConv(DIM, DIM, aggr="mean"),
    "graphconv-max": lambda: GraphConv(DIM, DIM, aggr="max"),
    "graphconv-min": lambda: GraphConv(DIM, DIM, aggr="min"),
    "gat": lambda: GATConv(DIM, DIM // 2, heads=2),
    "gat-noloops": lambda: GATConv(DIM, DIM // 2, heads=2, add_self_loops=False),
    "attention": lambda: AttentionConv(DIM, 2),
    "attention-sum": lambda: AttentionConv(DIM, 2, aggr="sum"),
    "layer": lambda: GraphTransformerLayer(DIM, 2, dim_feedforward=16, dropout=0.0),
    "layer-prenorm": lambda: GraphTransformerLayer(DIM, 2, dim_feedforward=16, dropout=0.0, norm_first=True),
    "transformer": lambda: GraphTransformer(DIM, 2, 2, dim_feedforward=16, dropout=0.0, final_norm=True),
}


def make(name: str, dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return LAYERS[name]().to(dtype).eval()


def random_edges(num_nodes: int, num_edges: int, generator: torch.Generator) -> torch.Tensor:
    """Random directed edges; self-loops and duplicates occur naturally."""
    if num_nodes == 0:
        return torch.empty(2, 0, dtype=torch.long)
    return torch.randint(0, num_nodes, (2, num_edges), generator=generator)
