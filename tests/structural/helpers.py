"""Random batches of small graphs (directed or not) with isolated nodes, disconnected pairs and single nodes."""

from __future__ import annotations

import torch
from torch_geometric.data import Batch, Data


def random_batch(sizes: list[int], seed: int = 0, directed: bool = True, density: float = 0.25,
                 edge_dim: int | None = None) -> Batch:
    gen = torch.Generator().manual_seed(seed)
    graphs = []
    for size in sizes:
        num_edges = int(density * size * size) if size > 1 else 0
        source = torch.randint(0, max(size, 1), (num_edges,), generator=gen)
        target = torch.randint(0, max(size - 1, 1), (num_edges,), generator=gen)  # the last node receives nothing
        edge_index = torch.stack([source, target])
        if not directed:
            edge_index = torch.cat([edge_index, edge_index.flip(0)], 1)
        data = Data(x=torch.randn(size, 4, generator=gen), edge_index=edge_index, num_nodes=size)
        if edge_dim is not None:
            data.edge_attr = torch.randn(edge_index.size(1), edge_dim, generator=gen)
        graphs.append(data)
    return Batch.from_data_list(graphs)
