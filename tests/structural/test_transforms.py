"""ShortestPathDistance: per-graph attributes that PyG batches into the batch's shortest paths."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch

from graphformer.structural import ShortestPathDistance, batch_path_edges, shortest_paths

from .helpers import random_batch


@pytest.mark.parametrize("paths", [False, True])
def test_batched_attributes_equal_batch_shortest_paths(paths):
    graphs = random_batch([6, 1, 4, 0, 7], seed=2).to_data_list()
    transform = ShortestPathDistance(max_distance=4, paths=paths)
    before = [dict(g.to_dict()) for g in graphs]
    transformed = [transform(g) for g in graphs]
    for g, keys in zip(graphs, before):  # the inputs are untouched
        assert set(g.keys()) == set(keys)
    batch = Batch.from_data_list(transformed)
    expected = shortest_paths(batch.edge_index, batch, max_distance=4, return_paths=paths)
    if paths:
        assert torch.equal(batch.spd, expected[0])
        assert torch.equal(batch_path_edges(batch.spd_path, batch), expected[1])
        assert not torch.equal(batch.spd_path, expected[1])  # stored per graph: offsets matter
    else:
        assert torch.equal(batch.spd, expected)


def test_transform_options_and_errors():
    data = random_batch([5]).to_data_list()[0]
    out = ShortestPathDistance(attr="distance")(data)
    assert out.distance.shape == (25,) and "distance" not in data
    assert "max_distance=None" in repr(ShortestPathDistance())
    with pytest.raises(ValueError, match="max_distance"):
        ShortestPathDistance(paths=True)
    with pytest.raises(ValueError, match="max_distance"):
        ShortestPathDistance(max_distance=-2)
    with pytest.raises(ValueError, match="attr"):
        ShortestPathDistance(attr="spd_index")
