"""Per-pair codes: layout, lookups on edges and padded blocks, errors."""

import pytest
import torch

from graphformer.graphs import PairCodes, fully_connected, padded_pair_index, pair_index
from graphformer.graphs.pairs import pair_nodes, pair_offsets

PTR = torch.tensor([0, 3, 3, 8, 9])  # graphs of 3, 0, 5 and 1 nodes


def test_layout_matches_fully_connected_edges():
    edges = fully_connected(ptr=PTR).to_edge_index()
    assert torch.equal(pair_index(edges, PTR), torch.arange(edges.size(1)))
    target, source = pair_nodes(PTR)
    assert torch.equal(torch.stack([source, target]), edges)
    assert pair_offsets(PTR).tolist() == [0, 9, 9, 34, 35]


def test_padded_index_is_a_plain_loop():
    index = padded_pair_index(PTR)
    sizes = PTR.diff().tolist()
    length, total = max(sizes), sum(s * s for s in sizes)
    assert index.shape == (4, length, length)
    offset = 0
    for g, size in enumerate(sizes):
        for i in range(length):
            for j in range(length):
                expected = offset + i * size + j if i < size and j < size else total
                assert int(index[g, i, j]) == expected
        offset += size * size


def test_codes_dense_and_on_edges():
    codes = PairCodes(torch.arange(35) % 4, ptr=PTR)
    assert codes.num_codes == 4
    dense = codes.dense()
    edges = torch.tensor([[1, 4], [2, 7]])  # 1 -> 2 (graph 0), 4 -> 7 (graph 2)
    got = codes.on_edges(edges)
    assert int(got[0]) == int(dense[0, 2, 1]) and int(got[1]) == int(dense[2, 4, 1])
    assert int(dense[1].max()) == -1  # the empty graph is all padding
    single = PairCodes(torch.tensor([[0, 1], [2, 0]]))
    assert single.num_graphs == 1 and single.on_edges(torch.tensor([[1], [0]])).tolist() == [1]


def test_codes_from_a_pyg_batch():
    from torch_geometric.data import Batch, Data

    graphs = [Data(num_nodes=n, codes=torch.full((n * n,), n)) for n in (2, 3)]
    batch = Batch.from_data_list(graphs)
    codes = PairCodes(batch.codes, batch)
    assert codes.dense()[1, 2, 2] == 3 and codes.dense()[0, 1, 1] == 2


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="sum_g L_g\\^2 = 35"):
        PairCodes(torch.zeros(30, dtype=torch.long), ptr=PTR)
    with pytest.raises(TypeError, match="`codes`"):
        PairCodes(torch.zeros(35), ptr=PTR)
    with pytest.raises(ValueError, match="non-negative"):
        PairCodes(-torch.ones(35, dtype=torch.long), ptr=PTR)
    with pytest.raises(ValueError, match="num_codes is 2"):
        PairCodes(torch.full((35,), 3), ptr=PTR, num_codes=2)
    with pytest.raises(ValueError, match="different graphs"):
        pair_index(torch.tensor([[0], [5]]), PTR)
