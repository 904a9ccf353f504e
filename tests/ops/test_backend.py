"""Dispatch of sparse attention between the fused Triton kernel and PyTorch (graphformer.ops.backend), on CPU with
stand-in kernels: the choice (environment variable, set_sparse_backend, sparse_backend) and its errors, the
self-check's fallback with one warning, and last_sparse_backend. The real kernel's self-check runs under Triton's
interpreter in tests/ops/test_triton_attention.py (the ``dispatch_*`` cases)."""

from __future__ import annotations

import re
import threading
import warnings

import pytest
import torch

import graphformer.ops as ops
from graphformer.ops import backend, triton_attention
from graphformer.ops.sparse import SparseAttention, sparse_attention
from tests.conftest import random_graph


@pytest.fixture(autouse=True)
def _clean_backend(monkeypatch):
    monkeypatch.delenv(backend.ENV_VAR, raising=False)
    backend.set_sparse_backend(None)
    backend._reset()
    yield
    backend.set_sparse_backend(None)
    backend._reset()


@pytest.fixture
def fake_device(monkeypatch):
    """CPU tensors count as a device the kernel runs on (as under the interpreter), Triton as importable, and
    ``auto`` may use it; the kernel itself is replaced by each test."""
    monkeypatch.setattr(backend, "_interpreted", lambda: True)
    monkeypatch.setattr(backend, "_auto_uses_interpreter", True)
    monkeypatch.setattr(triton_attention, "available", lambda: True)


def install_kernel(monkeypatch, behaviour):
    """Replace the fused kernel: ``"correct"`` (PyTorch's numbers), ``"wrong"`` (off by 10 %) or ``"raise"``;
    returns the list of calls made."""
    calls = []

    def fused(query, key, value, bias, source, target, scale, block_edges=None):
        calls.append(value.dtype)
        if behaviour == "raise":
            raise RuntimeError("PTX compile error: illegal instruction (stand-in)")
        out = SparseAttention.apply(query, key, value, bias, source, target, scale)
        return out * 1.1 if behaviour == "wrong" else out

    monkeypatch.setattr(triton_attention, "fused_attention", fused)
    return calls


def inputs(dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    edge_index = random_graph(7, 25, seed=seed)
    q, k, v = (torch.randn(7, 2, 4, generator=gen, dtype=dtype, requires_grad=True) for _ in range(3))
    bias = torch.randn(25, 2, generator=gen, dtype=dtype, requires_grad=True)
    return q, k, v, edge_index, bias


def run(q, k, v, edge_index, bias, **kwargs):
    """``sparse_attention``, its gradients, the reported path and the SparseBackendWarnings raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = sparse_attention(q, k, v, edge_index, bias=bias, **kwargs)
        path = ops.last_sparse_backend()
    grads = torch.autograd.grad(out, (q, k, v, bias), torch.ones_like(out))
    return out, grads, path, [w for w in caught if issubclass(w.category, ops.SparseBackendWarning)]


def reference(q, k, v, edge_index, bias):
    with ops.sparse_backend("torch"):
        out, grads, path, _ = run(q, k, v, edge_index, bias)
    assert path == "torch"
    return out, grads


# ----------------------------------------------------------------------------------------- the choice


@pytest.mark.parametrize("value, expected", [
    (None, "auto"), ("", "auto"), ("auto", "auto"), ("torch", "torch"), ("TRITON", "triton"), (" torch ", "torch"),
])
def test_environment_variable(monkeypatch, value, expected):
    if value is not None:
        monkeypatch.setenv("GRAPHFORMER_SPARSE_BACKEND", value)
    assert ops.get_sparse_backend() == expected


def test_unknown_values_are_errors_that_name_the_source(monkeypatch):
    monkeypatch.setenv("GRAPHFORMER_SPARSE_BACKEND", "cuda")
    with pytest.raises(ValueError, match=r"GRAPHFORMER_SPARSE_BACKEND must be one of 'auto', 'triton', 'torch'; "
                                         r"got 'cuda'"):
        ops.get_sparse_backend()
    with pytest.raises(ValueError, match="GRAPHFORMER_SPARSE_BACKEND"):  # at the first call that consults it
        sparse_attention(*inputs()[:4])
    with pytest.raises(ValueError, match=r"set_sparse_backend\(backend=...\) must be one of 'auto', 'triton'"):
        ops.set_sparse_backend("fast")
    with pytest.raises(ValueError, match=r"sparse_backend\(backend=...\) must be one of"):
        with ops.sparse_backend("pytorch"):
            pass


def test_precedence_context_then_process_then_environment(monkeypatch):
    monkeypatch.setenv("GRAPHFORMER_SPARSE_BACKEND", "triton")
    assert ops.get_sparse_backend() == "triton"
    ops.set_sparse_backend("torch")
    assert ops.get_sparse_backend() == "torch"
    with ops.sparse_backend("auto"):
        assert ops.get_sparse_backend() == "auto"
        with ops.sparse_backend("triton"):
            assert ops.get_sparse_backend() == "triton"
        assert ops.get_sparse_backend() == "auto"
    assert ops.get_sparse_backend() == "torch"
    ops.set_sparse_backend(None)
    assert ops.get_sparse_backend() == "triton"


def test_context_manager_is_per_thread():
    seen = {}
    inside, release = threading.Event(), threading.Event()

    def worker():
        with ops.sparse_backend("torch"):
            inside.set()
            release.wait(5)
            seen["worker"] = ops.get_sparse_backend()

    thread = threading.Thread(target=worker)
    thread.start()
    inside.wait(5)
    seen["main"] = ops.get_sparse_backend()
    release.set()
    thread.join()
    assert seen == {"worker": "torch", "main": "auto"}


# --------------------------------------------------------------------------------------------- the report


def test_last_sparse_backend_on_cpu_is_torch_and_per_thread():
    results = {}
    thread = threading.Thread(target=lambda: results.setdefault("fresh thread", ops.last_sparse_backend()))
    thread.start()
    thread.join()
    sparse_attention(*inputs()[:4])
    assert ops.last_sparse_backend() == "torch"  # CPU, no interpreter: auto never considers Triton
    assert results == {"fresh thread": None}
    assert not backend._checked


def test_report_follows_the_path(monkeypatch, fake_device):
    install_kernel(monkeypatch, "correct")
    q, k, v, edge_index, bias = inputs()
    assert run(q, k, v, edge_index, bias)[2] == "triton"
    assert run(q, k, v, edge_index, bias, dropout=0.3)[2] == "torch"  # the kernel has no dropout
    assert run(q, k, v, edge_index, bias, return_weights=False, num_targets=7)[2] == "triton"
    with ops.sparse_backend("torch"):
        assert run(q, k, v, edge_index, bias)[2] == "torch"
    torch.use_deterministic_algorithms(True)
    try:
        assert run(q, k, v, edge_index, bias)[2] == "torch"  # the kernel's backward uses atomic adds
    finally:
        torch.use_deterministic_algorithms(False)


# ----------------------------------------------------------------------------------------- the self-check


def test_correct_kernel_passes_the_check_once_per_device_and_dtype(monkeypatch, fake_device):
    calls = install_kernel(monkeypatch, "correct")
    for dtype in (torch.float32, torch.float32, torch.float64):
        out, grads, path, warned = run(*inputs(dtype))
        assert path == "triton" and not warned
    # the check runs the kernel twice (q.k + bias, bias only) per (device, dtype); each call once more
    assert calls == [torch.float32] * 3 + [torch.float32] + [torch.float64] * 3
    assert backend._checked == {(torch.device("cpu"), torch.float32): True, (torch.device("cpu"), torch.float64): True}


@pytest.mark.parametrize("behaviour, reason", [
    ("wrong", r"output \(q\.k \+ bias scores\): max abs error [0-9.e-]+ exceeds the torch.float32 tolerance "
              r"atol=0.0001 \+ rtol=0.001"),
    ("raise", r"RuntimeError: PTX compile error: illegal instruction \(stand-in\)"),
])
def test_broken_kernel_falls_back_with_one_warning(monkeypatch, fake_device, behaviour, reason):
    calls = install_kernel(monkeypatch, behaviour)
    q, k, v, edge_index, bias = inputs()
    want, want_grads = reference(q, k, v, edge_index, bias)
    out, grads, path, warned = run(q, k, v, edge_index, bias)
    assert path == "torch"
    assert len(warned) == 1
    message = str(warned[0].message)
    assert re.search(f"failed its self-check: {reason}", message), message
    for fragment in ("on cpu for torch.float32", "GRAPHFORMER_SPARSE_BACKEND=torch", "=triton",
                     "graphformer.ops.set_sparse_backend"):
        assert fragment in message, message
    torch.testing.assert_close(out, want)
    for got, expected in zip(grads, want_grads):
        torch.testing.assert_close(got, expected)
    checked_calls = len(calls)
    for _ in range(3):  # cached: no new check, no new warning, the torch path
        out, _, path, warned = run(q, k, v, edge_index, bias)
        assert path == "torch" and not warned
    assert len(calls) == checked_calls
    # float64 is a separate (device, dtype): it is checked (and fails, and warns) on its own
    _, _, path, warned = run(*inputs(torch.float64))
    assert path == "torch" and len(warned) == 1 and "torch.float64" in str(warned[0].message)


def test_kernel_error_after_a_passed_check_falls_back_once(monkeypatch, fake_device):
    install_kernel(monkeypatch, "correct")
    q, k, v, edge_index, bias = inputs()
    assert run(q, k, v, edge_index, bias)[2] == "triton"
    install_kernel(monkeypatch, "raise")  # e.g. a head width whose kernel fails to compile
    want, _ = reference(q, k, v, edge_index, bias)
    out, _, path, warned = run(q, k, v, edge_index, bias)
    assert path == "torch" and len(warned) == 1
    assert "raised RuntimeError: PTX compile error" in str(warned[0].message)
    torch.testing.assert_close(out, want)
    assert not run(q, k, v, edge_index, bias)[3]


def test_forced_triton_skips_the_check_and_raises_kernel_errors(monkeypatch, fake_device):
    install_kernel(monkeypatch, "wrong")
    q, k, v, edge_index, bias = inputs()
    want, _ = reference(q, k, v, edge_index, bias)
    monkeypatch.setenv("GRAPHFORMER_SPARSE_BACKEND", "triton")
    out, _, path, warned = run(q, k, v, edge_index, bias)
    assert path == "triton" and not warned and not backend._checked  # forced: the user's responsibility
    torch.testing.assert_close(out, want * 1.1)
    install_kernel(monkeypatch, "raise")
    with pytest.raises(RuntimeError, match="PTX compile error"):
        sparse_attention(q, k, v, edge_index, bias=bias)


def test_forced_triton_where_it_cannot_run_is_an_error(monkeypatch):
    q, k, v, edge_index, bias = inputs()
    monkeypatch.setattr(backend, "_interpreted", lambda: False)
    with ops.sparse_backend("triton"):
        monkeypatch.setattr(triton_attention, "available", lambda: True)
        with pytest.raises(RuntimeError, match=r"forced to 'triton' \(graphformer.ops.sparse_backend\), but the "
                                               r"tensors are on cpu.*TRITON_INTERPRET=1"):
            sparse_attention(q, k, v, edge_index, bias=bias)
        monkeypatch.setattr(triton_attention, "available", lambda: False)
        with pytest.raises(RuntimeError, match="triton cannot be imported"):
            sparse_attention(q, k, v, edge_index, bias=bias)
        out = sparse_attention(q, k, v, edge_index, bias=bias, dropout=0.2)  # calls the kernel cannot do: torch
        assert ops.last_sparse_backend() == "torch" and out.shape == v.shape


def test_layers_report_the_path(monkeypatch, fake_device):
    import graphformer as gf

    install_kernel(monkeypatch, "correct")
    edge_index = random_graph(9, 30, seed=3)
    x = torch.randn(9, 8)
    gf.GATConv(8, 4, heads=2)(x, edge_index)
    assert ops.last_sparse_backend() == "triton"
    with ops.sparse_backend("torch"):
        gf.GraphTransformerLayer(8, 2, dim_feedforward=16, dropout=0.0)(x, edge_index)
    assert ops.last_sparse_backend() == "torch"
