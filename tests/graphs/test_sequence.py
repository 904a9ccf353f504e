"""Sentence graph builders against networkx graphs and plain-loop oracles."""

from __future__ import annotations

import math

import networkx as nx
import pytest
import torch

from graphformer.graphs import (
    Dilated,
    binary_partition_tree,
    causal,
    chain,
    dependency_tree,
    dilated,
    from_networkx,
    fully_connected,
    lengths_to_ptr,
    sentence_ptr,
    union,
    window,
)

LENGTHS = [[1], [2], [5], [3, 1, 4], [7, 0, 2], [8, 16]]


def edge_set(edge_index: torch.Tensor) -> set[tuple[int, int]]:
    return {(int(j), int(i)) for j, i in edge_index.t()}


def batched_networkx(graph_of_length, lengths) -> set[tuple[int, int]]:
    """Oracle: the disjoint union of one networkx graph per sentence, as (source, target) pairs."""
    edges, offset = set(), 0
    for length in lengths:
        edges |= {(j + offset, i + offset) for j, i in edge_set(from_networkx(graph_of_length(length)))}
        offset += length
    return edges


def loops(lengths) -> set[tuple[int, int]]:
    return {(n, n) for n in range(sum(lengths))}


def is_sorted_unique(edge_index: torch.Tensor, num_nodes: int) -> bool:
    key = edge_index[1] * max(num_nodes, 1) + edge_index[0]
    return bool((key[1:] > key[:-1]).all())


@pytest.mark.parametrize("lengths", LENGTHS)
@pytest.mark.parametrize("self_loops", [True, False])
def test_chain_is_path_graph(lengths, self_loops):
    ptr = lengths_to_ptr(torch.tensor(lengths))
    edge_index = chain(ptr=ptr, self_loops=self_loops)
    expected = batched_networkx(nx.path_graph, lengths) | (loops(lengths) if self_loops else set())
    assert edge_set(edge_index) == expected
    n = sum(lengths)
    assert edge_index.size(1) == sum(2 * max(L - 1, 0) for L in lengths) + (n if self_loops else 0)
    assert is_sorted_unique(edge_index, n)


@pytest.mark.parametrize("lengths", LENGTHS)
def test_chain_equals_window_radius_one_and_accepts_every_batch_form(lengths):
    lengths_t = torch.tensor(lengths)
    batch = torch.repeat_interleave(torch.arange(len(lengths)), lengths_t)
    expected = window(ptr=lengths_to_ptr(lengths_t), radius=1).to_edge_index()
    for edge_index in (chain(lengths=lengths_t), chain(batch, num_nodes=sum(lengths)),
                       chain(ptr=lengths_to_ptr(lengths_t))):
        assert torch.equal(edge_index, expected)


@pytest.mark.parametrize("lengths", LENGTHS)
def test_complete_and_causal_against_networkx(lengths):
    ptr = lengths_to_ptr(torch.tensor(lengths))
    complete = batched_networkx(nx.complete_graph, lengths) | loops(lengths)
    assert edge_set(fully_connected(ptr=ptr).to_edge_index()) == complete
    assert edge_set(causal(ptr=ptr).to_edge_index()) == {(j, i) for j, i in complete if j <= i}


@pytest.mark.parametrize("lengths", LENGTHS)
@pytest.mark.parametrize("radius,dilation", [(0, 1), (1, 1), (2, 2), (1, 3), (3, 2)])
def test_dilated_against_loop(lengths, radius, dilation):
    ptr = lengths_to_ptr(torch.tensor(lengths))
    structure = dilated(radius=radius, dilation=dilation, ptr=ptr)
    assert isinstance(structure, Dilated)
    expected, offset = set(), 0
    for length in lengths:
        for i in range(length):
            for j in range(length):
                if abs(i - j) <= radius * dilation and (i - j) % dilation == 0:
                    expected.add((j + offset, i + offset))
        offset += length
    edge_index = structure.to_edge_index()
    assert edge_set(edge_index) == expected
    assert structure.num_edges == len(expected) == edge_index.size(1)
    if dilation == 1:
        assert torch.equal(edge_index, window(ptr=ptr, radius=radius).to_edge_index())


def test_dilated_rejects_bad_arguments():
    with pytest.raises(ValueError, match="dilation"):
        dilated(num_nodes=4, radius=1, dilation=0)
    with pytest.raises(ValueError, match="radius"):
        dilated(num_nodes=4, radius=-1, dilation=2)


# -- dependency trees -------------------------------------------------------------------------------------------
TREES = [
    [[0]],
    [[2, 0, 2]],
    [[3, 3, 4, 0, 6, 4, 4]],  # "From the AP comes this story :"
    [[2, 0], [0], [0, 1, 1, 3]],
]


@pytest.mark.parametrize("sentences", TREES)
@pytest.mark.parametrize("self_loops", [True, False])
def test_dependency_tree_against_networkx(sentences, self_loops):
    heads = torch.tensor([h for s in sentences for h in s])
    lengths = torch.tensor([len(s) for s in sentences])
    edge_index = dependency_tree(heads, lengths=lengths, self_loops=self_loops)
    expected, offset = set(), 0
    for s in sentences:
        tree = nx.Graph()
        tree.add_nodes_from(range(len(s)))
        tree.add_edges_from((d, h - 1) for d, h in enumerate(s) if h > 0)
        assert nx.is_tree(tree)
        expected |= {(j + offset, i + offset) for j, i in edge_set(from_networkx(tree))}
        offset += len(s)
    if self_loops:
        expected |= {(n, n) for n in range(offset)}
    assert edge_set(edge_index) == expected
    assert edge_index.size(1) == 2 * sum(len(s) - 1 for s in sentences) + (offset if self_loops else 0)
    assert is_sorted_unique(edge_index, offset)


@pytest.mark.parametrize("heads,message", [([0, 5], "outside"), ([0, -1], "outside"), ([2, 2], "own head")])
def test_dependency_tree_rejects_bad_heads(heads, message):
    with pytest.raises(ValueError, match=message):
        dependency_tree(torch.tensor(heads), lengths=torch.tensor([2]))


def test_dependency_tree_heads_are_local_to_each_sentence():
    # head 1 of the second sentence is node 2, not node 0
    edge_index = dependency_tree(torch.tensor([0, 1, 0, 1]), lengths=torch.tensor([2, 2]), self_loops=False)
    assert edge_set(edge_index) == {(0, 1), (1, 0), (2, 3), (3, 2)}


# -- union -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lengths", LENGTHS[2:])
def test_union_is_set_union(lengths):
    lengths_t = torch.tensor(lengths)
    ptr = lengths_to_ptr(lengths_t)
    n = sum(lengths)
    heads = torch.cat([torch.tensor([0] + [1] * (L - 1)) for L in lengths if L > 0]).long()  # star trees
    tree, path, structure = dependency_tree(heads, ptr=ptr), chain(ptr=ptr), dilated(radius=1, dilation=2, ptr=ptr)
    merged = union(tree, path, structure, num_nodes=n)
    assert edge_set(merged) == edge_set(tree) | edge_set(path) | edge_set(structure.to_edge_index())
    assert is_sorted_unique(merged, n)


def test_union_rejects_mismatched_graphs():
    with pytest.raises(ValueError, match="num_nodes"):
        union(fully_connected(num_nodes=3), num_nodes=4)
    with pytest.raises(ValueError, match="graphs\\[0\\]"):
        union(torch.tensor([[0], [5]]), num_nodes=4)
    with pytest.raises(ValueError, match="at least one"):
        union(num_nodes=4)


# -- binary partition tree ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_partition_tree_of_power_of_two_is_balanced_binary_tree(depth):
    tree = binary_partition_tree(num_nodes=2**depth, contextual=False, self_loops=False)
    assert tree.num_nodes == 2 ** (depth + 1) - 1
    graph = nx.DiGraph(tree.edge_index.t().tolist())
    # edges point child -> parent: every node but the root has out-degree 1
    assert sorted(d for _, d in graph.out_degree()) == [0] + [1] * (tree.num_nodes - 1)
    assert nx.is_isomorphic(graph.to_undirected(), nx.balanced_tree(2, depth))


@pytest.mark.parametrize("lengths", LENGTHS)
def test_partition_tree_spans_and_levels(lengths):
    lengths_t = torch.tensor(lengths)
    tree = binary_partition_tree(lengths=lengths_t)
    n = sum(lengths)
    expected_spans = sum(sum(math.ceil(L / 2**lvl) for lvl in range(1, math.ceil(math.log2(L)) + 1))
                         for L in lengths if L > 1)
    assert tree.num_words == n and tree.num_nodes == n + expected_spans
    assert tree.batch.shape == tree.span_start.shape == tree.level.shape == (tree.num_nodes,)
    ptr = sentence_ptr(lengths=lengths_t)
    for node in range(tree.num_nodes):  # spans lie in their sentence and have <= 2^level words
        g = int(tree.batch[node])
        start, end, level = int(tree.span_start[node]), int(tree.span_end[node]), int(tree.level[node])
        assert int(ptr[g]) <= start < end <= int(ptr[g + 1])
        assert end - start <= 2**level
        assert (start - int(ptr[g])) % 2**level == 0  # aligned within the sentence
    # children -> parent edges: a span's sources (besides itself) cover exactly its words
    source, target = tree.edge_index
    for node in range(n, tree.num_nodes):
        children = source[(target == node) & (source != node)]
        covered = sorted(w for c in children.tolist() for w in range(int(tree.span_start[c]), int(tree.span_end[c])))
        assert covered == list(range(int(tree.span_start[node]), int(tree.span_end[node])))


@pytest.mark.parametrize("lengths", LENGTHS)
def test_partition_tree_context_partitions_each_sentence(lengths):
    """Each word's incoming span/word nodes (self included) cover its sentence exactly once, with <= log2 L + 1."""
    lengths_t = torch.tensor(lengths)
    tree = binary_partition_tree(lengths=lengths_t)
    ptr = sentence_ptr(lengths=lengths_t)
    source, target = tree.edge_index
    for word in range(tree.num_words):
        g = int(tree.batch[word])
        length = int(ptr[g + 1] - ptr[g])
        sources = source[target == word].tolist()
        covered = sorted(w for s in sources for w in range(int(tree.span_start[s]), int(tree.span_end[s])))
        assert covered == list(range(int(ptr[g]), int(ptr[g + 1])))
        assert len(sources) <= math.ceil(math.log2(max(length, 1))) + 1


def test_partition_tree_extend_means_words():
    tree = binary_partition_tree(lengths=torch.tensor([5, 3]))
    x = torch.randn(8, 4)
    extended = tree.extend(x)
    assert torch.equal(extended[:8], x)
    for node in range(8, tree.num_nodes):
        start, end = int(tree.span_start[node]), int(tree.span_end[node])
        torch.testing.assert_close(extended[node], x[start:end].mean(0))
    with pytest.raises(ValueError, match="num_words"):
        tree.extend(torch.randn(7, 4))


def test_sentence_ptr_forms_agree_and_validate():
    lengths = torch.tensor([2, 0, 3])
    batch = torch.tensor([0, 0, 2, 2, 2])
    assert torch.equal(sentence_ptr(lengths=lengths), torch.tensor([0, 2, 2, 5]))
    assert torch.equal(sentence_ptr(batch), torch.tensor([0, 2, 2, 5]))
    with pytest.raises(ValueError, match="not several"):
        sentence_ptr(batch, lengths=lengths)
    with pytest.raises(ValueError, match="non-negative"):
        lengths_to_ptr(torch.tensor([1, -1]))
