"""The fused Triton kernel against the gather/softmax/scatter reference (aggr.Attention), on CPU.

Triton's interpreter (``TRITON_INTERPRET=1``) runs the kernels on CPU tensors, but the variable must be set
before Triton is first imported, and other tests (torch.compile/inductor) may import Triton earlier in the
session. So this file runs itself in one subprocess (``python test_triton_attention.py``) with the variable
set; every ``_case_*`` there reports ``ok`` or its traceback, and each pytest test checks one case's report.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import json
import math
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest
import torch

from graphformer.aggr import Attention

ROOT = Path(__file__).resolve().parents[2]
INTERPRETER_CASES: dict[str, object] = {}  # run with TRITON_INTERPRET=1
COMPILER_CASES: dict[str, object] = {}  # run without it (the interpreter replaces the compiler)


def _case(fn, registry=INTERPRETER_CASES):
    registry[fn.__name__.removeprefix("_case_")] = fn
    return fn


# ---------------------------------------------------------------- run inside the interpreter subprocess


def _graph(num_nodes: int, num_edges: int, seed: int, isolated: int = 1) -> torch.Tensor:
    """Unsorted random ``edge_index``; the last ``isolated`` nodes receive no edge."""
    gen = torch.Generator().manual_seed(seed)
    source = torch.randint(0, num_nodes, (num_edges,), generator=gen)
    target = torch.randint(0, num_nodes - isolated, (num_edges,), generator=gen)
    return torch.stack([source, target])


def _reference(query, key, value, edge_index, bias, scale):
    """Gather/softmax/scatter in float64 with :class:`graphformer.aggr.Attention`."""
    source, target = edge_index[0], edge_index[1]
    scores = value.new_zeros(edge_index.size(1), value.size(1), dtype=torch.float64)
    if query is not None:
        scores = (query.double().index_select(0, target) * key.double().index_select(0, source)).sum(-1) * scale
    if bias is not None:
        scores = scores + bias.double()
    values = value.double().index_select(0, source)
    return Attention().reduce(values, target, value.size(0), scores=scores)


def _compare(num_nodes, heads, channels, edge_index, with_qk=True, with_bias=True, dtype=torch.float32,
             block_edges=None, bias_fill=None, seed=0):
    """Forward and gradients of ``fused_attention`` (CSR inputs, as the CUDA dispatch passes them) against
    the float64 reference on the unsorted ``edge_index``."""
    from graphformer.ops.sparse import csr_order
    from graphformer.ops.triton_attention import fused_attention

    gen = torch.Generator().manual_seed(seed)
    shape = (num_nodes, heads, channels)
    value = torch.randn(shape, generator=gen).to(dtype).requires_grad_()
    query = key = bias = None
    if with_qk:
        query, key = (torch.randn(shape, generator=gen).to(dtype).requires_grad_() for _ in range(2))
    if with_bias:
        bias = torch.randn(edge_index.size(1), heads, generator=gen)
        if bias_fill is not None:
            bias = bias_fill(bias, edge_index)
        bias = bias.to(dtype).requires_grad_()
    scale = 1.0 / math.sqrt(channels)
    inputs = [t for t in (query, key, value, bias) if t is not None]

    perm, source, target = csr_order(edge_index)  # the same steps as sparse_attention's dispatch
    bias_csr = bias.index_select(0, perm) if bias is not None and perm is not None else bias
    out = fused_attention(query, key, value, bias_csr, source, target, scale, block_edges=block_edges)
    ref = _reference(query, key, value, edge_index, bias, scale)
    assert out.dtype == dtype and out.shape == shape, (out.dtype, out.shape)
    tol = {torch.float64: {}, torch.float32: {"atol": 1e-5, "rtol": 1e-4}}.get(dtype, {"atol": 3e-2, "rtol": 3e-2})
    torch.testing.assert_close(out.double(), ref, **tol)
    assert torch.isfinite(out).all()

    grad = torch.randn(shape, generator=gen).to(dtype)
    got = torch.autograd.grad(out, inputs, grad)
    want = torch.autograd.grad(ref, inputs, grad.double())
    for g, w, x in zip(got, want, inputs):
        assert g.dtype == x.dtype and g.shape == x.shape
        assert torch.isfinite(g).all()
        torch.testing.assert_close(g.double(), w.double(), **tol)
    return out


@_case
def _case_qk_bias_c16_multiblock():
    """C = 16, three heads, degree up to ~10 walked in blocks of 4 edges, one isolated target."""
    edge_index = _graph(9, 45, seed=1)
    out = _compare(9, 3, 16, edge_index, block_edges=4)
    assert torch.all(out[-1] == 0)


@_case
def _case_qk_c12_no_bias():
    """C = 12 (not a power of two: masked to BLOCK_C = 16), two heads, two isolated targets."""
    out = _compare(8, 2, 12, _graph(8, 30, seed=2, isolated=2), with_bias=False, block_edges=8)
    assert torch.all(out[-2:] == 0)


@_case
def _case_bias_only_c12():
    """query = key = None: the scores are the bias alone (GAT's path)."""
    _compare(7, 2, 12, _graph(7, 25, seed=3), with_qk=False, block_edges=4)


@_case
def _case_empty_edge_set():
    """No edges at all: zeros out, zero gradients, a ``[0, H]`` bias gradient."""
    out = _compare(5, 2, 16, torch.empty(2, 0, dtype=torch.long))
    assert torch.all(out == 0)


@_case
def _case_high_degree_default_block():
    """A hub with 70 incoming edges crosses several default-sized (32) edge blocks."""
    gen = torch.Generator().manual_seed(4)
    source = torch.randint(0, 6, (80,), generator=gen)
    target = torch.cat([torch.zeros(70, dtype=torch.long), torch.randint(1, 5, (10,), generator=gen)])
    _compare(6, 1, 8, torch.stack([source, target]))


@_case
def _case_masked_bias_rows():
    """-inf bias on every edge into node 0 (zeros, no NaN) and on some edges elsewhere."""

    def fill(bias, edge_index):
        bias[edge_index[1] == 0] = float("-inf")
        bias[::5] = float("-inf")
        return bias

    edge_index = _graph(6, 30, seed=5)
    out = _compare(6, 2, 12, edge_index, bias_fill=fill, block_edges=4)
    assert torch.all(out[0] == 0)


@_case
def _case_half_precision():
    """float16 and bfloat16 inputs: float32 accumulation, results and gradients in the input dtype."""
    edge_index = _graph(7, 30, seed=6)
    for dtype in (torch.float16, torch.bfloat16):
        _compare(7, 2, 12, edge_index, dtype=dtype, block_edges=4)


@_case
def _case_float64_gradcheck():
    """float64 inputs accumulate in float64: reference to default tolerances, and ``gradcheck`` passes."""
    from graphformer.ops.sparse import csr_order
    from graphformer.ops.triton_attention import fused_attention

    edge_index = _graph(6, 18, seed=8)
    _compare(6, 2, 3, edge_index, dtype=torch.float64, block_edges=2)
    edge_index = _graph(4, 8, seed=9)
    _, source, target = csr_order(edge_index)
    gen = torch.Generator().manual_seed(8)
    q, k, v = (torch.randn(4, 1, 2, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(3))
    bias = torch.randn(8, 1, generator=gen, dtype=torch.float64, requires_grad=True)
    for inputs in ((q, k, v, bias, source, target, 0.5, 2), (None, None, v, bias, source, target, 1.0, 2)):
        assert torch.autograd.gradcheck(fused_attention, inputs, fast_mode=True)


@_case
def _case_matches_sparse_attention():
    """Same numbers as the CPU path of ``sparse_attention`` (SparseAttention) on an unsorted graph."""
    from graphformer.ops.sparse import csr_order, sparse_attention
    from graphformer.ops.triton_attention import fused_attention

    gen = torch.Generator().manual_seed(7)
    edge_index = _graph(8, 35, seed=7)
    q, k, v = (torch.randn(8, 2, 12, generator=gen) for _ in range(3))
    bias = torch.randn(35, 2, generator=gen)
    perm, source, target = csr_order(edge_index)
    fused = fused_attention(q, k, v, bias.index_select(0, perm), source, target, 0.5)
    torch.testing.assert_close(fused, sparse_attention(q, k, v, edge_index, bias=bias, scale=0.5))


def _dispatch_inputs(seed: int = 10, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    edge_index = _graph(7, 30, seed=seed)
    q, k, v = (torch.randn(7, 2, 12, generator=gen).to(dtype).requires_grad_() for _ in range(3))
    bias = torch.randn(30, 2, generator=gen).to(dtype).requires_grad_()
    return q, k, v, edge_index, bias


def _run_dispatch(choice, q, k, v, edge_index, bias, **kwargs):
    """``sparse_attention`` under ``sparse_backend(choice)``: output, gradients, the reported path and the
    SparseBackendWarnings raised."""
    import warnings

    from graphformer.ops import SparseBackendWarning, last_sparse_backend, sparse_backend
    from graphformer.ops.sparse import sparse_attention

    with warnings.catch_warnings(record=True) as caught, sparse_backend(choice):
        warnings.simplefilter("always")
        out = sparse_attention(q, k, v, edge_index, bias=bias, **kwargs)
        path = last_sparse_backend()
    grads = torch.autograd.grad(out, (q, k, v, bias), torch.ones_like(out))
    return out, grads, path, [w for w in caught if issubclass(w.category, SparseBackendWarning)]


@_case
def _case_dispatch_auto_self_check_picks_triton():
    """``auto`` (allowed to use the interpreter here) runs the self-check once per dtype; the real kernel passes,
    so the calls run Triton, with no warning and the numbers of the torch path."""
    from graphformer.ops import backend

    backend._reset()
    backend._auto_uses_interpreter = True
    try:
        for dtype in (torch.float32, torch.float64):
            inputs = _dispatch_inputs(dtype=dtype)
            out, grads, path, warned = _run_dispatch("auto", *inputs)
            assert path == "triton" and not warned, (path, [str(w.message) for w in warned])
            assert backend._checked[(torch.device("cpu"), dtype)] is True
            ref, ref_grads, ref_path, _ = _run_dispatch("torch", *inputs)
            assert ref_path == "torch"
            tol = {"atol": 1e-5, "rtol": 1e-4} if dtype == torch.float32 else {}
            torch.testing.assert_close(out, ref, **tol)
            for g, r in zip(grads, ref_grads):
                torch.testing.assert_close(g, r, **tol)
        _, _, path, _ = _run_dispatch("auto", *_dispatch_inputs(), dropout=0.5)  # not supported by the kernel
        assert path == "torch", path
    finally:
        backend._auto_uses_interpreter = False
        backend._reset()


@_case
def _case_dispatch_forced_triton_skips_the_check():
    """``triton`` runs the kernel on CPU under the interpreter without a self-check (even where ``auto`` would
    not use the interpreter)."""
    from graphformer.ops import backend

    backend._reset()
    out, _, path, warned = _run_dispatch("triton", *_dispatch_inputs())
    assert path == "triton" and not warned and not backend._checked
    ref, _, _, _ = _run_dispatch("torch", *_dispatch_inputs())
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    _, _, path, _ = _run_dispatch("auto", *_dispatch_inputs())  # auto ignores the interpreter by default
    assert path == "torch" and not backend._checked


class _Tampered:
    """Stands in for a Triton kernel: launches the real one with some arguments changed."""

    def __init__(self, kernel, scale_factor=1.0, **constexprs):
        self.kernel, self.scale_factor, self.constexprs = kernel, scale_factor, constexprs

    def __getitem__(self, grid):
        launch = self.kernel[grid]

        def run(*args, **kwargs):
            args = (*args[:-1], args[-1] * self.scale_factor)  # the last positional argument is the scale
            return launch(*args, **{**kwargs, **self.constexprs})

        return run


@_case
def _case_dispatch_broken_kernel_falls_back():
    """A real kernel launched wrongly (doubled scale: wrong numbers; BLOCK_E = 3: Triton refuses a block that is
    not a power of two) fails the self-check: one warning per dtype, then the torch path's numbers."""
    from graphformer.ops import _triton_kernels as kernels
    from graphformer.ops import backend

    real = kernels.attention_forward_kernel
    backend._auto_uses_interpreter = True
    try:
        for tampered, expected in ((_Tampered(real, scale_factor=2.0), "max abs error"),
                                   (_Tampered(real, BLOCK_E=3), "power of 2")):
            backend._reset()
            kernels.attention_forward_kernel = tampered
            inputs = _dispatch_inputs()
            ref, ref_grads, _, _ = _run_dispatch("torch", *inputs)
            out, grads, path, warned = _run_dispatch("auto", *inputs)
            assert path == "torch" and len(warned) == 1, (path, len(warned))
            message = str(warned[0].message)
            assert expected in message and "cpu" in message and "float32" in message, message
            assert "GRAPHFORMER_SPARSE_BACKEND=torch" in message, message
            torch.testing.assert_close(out, ref)
            for g, r in zip(grads, ref_grads):
                torch.testing.assert_close(g, r)
            _, _, path, warned = _run_dispatch("auto", *inputs)  # cached: no second check, no second warning
            assert path == "torch" and not warned
    finally:
        kernels.attention_forward_kernel = real
        backend._auto_uses_interpreter = False
        backend._reset()


@functools.partial(_case, registry=COMPILER_CASES)
def _case_compiles_for_cuda():
    """Ahead-of-time compile both kernels to a cubin for sm_90 (no GPU needed; Triton's NVIDIA backend)."""
    import triton
    import triton.language as tl

    if tuple(int(part) for part in triton.__version__.split(".")[:2]) < (3, 3):
        raise _Skip(f"ASTSource signature of triton {triton.__version__} differs (needs >= 3.3)")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from graphformer.ops import _triton_kernels as kernels

    for input_type, acc_type, acc_dtype in (("fp16", "fp32", tl.float32), ("fp64", "fp64", tl.float64)):
        constexprs = {"HAS_QK": True, "HAS_BIAS": True, "BLOCK_E": 32, "BLOCK_C": 16, "ACC_DTYPE": acc_dtype}
        for kernel in (kernels.attention_forward_kernel, kernels.attention_backward_kernel):
            signature = {}
            for name in kernel.arg_names:
                if name in constexprs:
                    signature[name] = "constexpr"
                elif name in ("source_ptr", "row_pointer_ptr"):
                    signature[name] = "*i64"
                elif name in ("query_ptr", "key_ptr", "value_ptr", "bias_ptr", "grad_out_ptr"):
                    signature[name] = f"*{input_type}"
                elif name.endswith("_ptr"):
                    signature[name] = f"*{acc_type}"
                else:
                    signature[name] = "fp32" if name == "scale" else "i32"
            source = ASTSource(kernel, signature, constexprs=constexprs)
            compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32))
            assert compiled.asm.get("cubin"), f"no cubin for {kernel.__name__} ({input_type})"


class _Skip(Exception):
    """Raised by a case that cannot run with the installed Triton."""


def _run_cases(cases) -> dict[str, str]:
    results = {}
    for name, case in cases.items():
        start = time.perf_counter()
        try:
            case()
            results[name] = "ok"
        except _Skip as skip:
            results[name] = f"skip: {skip}"
        except Exception:  # report every failure, keep going
            results[name] = traceback.format_exc()
        print(f"{name}: {time.perf_counter() - start:.2f}s", file=sys.stderr)
    return results


# ---------------------------------------------------------------- pytest side


#: subprocesses use one CPU thread: results do not depend on the machine's core count or on what else runs there
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
INTERPRETER_MIN_VERSION = (3, 7)  # triton 3.6's interpreter cannot use a loaded scalar as a loop bound


def _triton_version() -> tuple[int, ...] | None:
    """Installed triton version without importing it (None when absent)."""
    if importlib.util.find_spec("triton") is None:
        return None
    version = importlib.metadata.version("triton")
    return tuple(int(part) for part in version.split("+")[0].split(".")[:2] if part.isdigit())


def _run_subprocess(mode: str) -> dict[str, str]:
    version = _triton_version()
    if version is None:
        pytest.skip("triton is not installed")
    if mode == "interpret" and version < INTERPRETER_MIN_VERSION:
        pytest.skip(f"the kernels run under triton's interpreter from {INTERPRETER_MIN_VERSION}, found {version}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           **ONE_THREAD}
    env.pop("TRITON_INTERPRET", None)
    if mode == "interpret":
        env["TRITON_INTERPRET"] = "1"
    proc = subprocess.run(  # the timeout catches a hang: the cases take about a minute, several on a busy machine
        [sys.executable, __file__, mode], env=env, cwd=ROOT, capture_output=True, text=True, timeout=1200
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and lines, f"{mode} subprocess failed:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(lines[-1])


@pytest.fixture(scope="module")
def interpreter_results() -> dict[str, str]:
    return _run_subprocess("interpret")


@pytest.fixture(scope="module")
def compiler_results() -> dict[str, str]:
    return _run_subprocess("compile")


@pytest.mark.parametrize("name", list(INTERPRETER_CASES))
def test_fused_attention_interpreter(interpreter_results, name):
    result = interpreter_results[name]
    if result.startswith("skip: "):
        pytest.skip(result)
    assert result == "ok", result


@pytest.mark.parametrize("name", list(COMPILER_CASES))
def test_kernels_compile_for_cuda(compiler_results, name):
    result = compiler_results[name]
    if result.startswith("skip: ") or "ModuleNotFoundError" in result or "ImportError" in result:
        pytest.skip(f"Triton's ahead-of-time compiler is not usable here:\n{result}")
    assert result == "ok", result


@pytest.mark.parametrize("triton_absent", [False, True])
def test_importing_graphformer_does_not_import_triton(triton_absent):
    """Triton is imported lazily (only when a kernel launches), so graphformer works without it.

    ``import torch_geometric`` (graphformer's aggregators subclass PyG's ``Aggregation``) imports ``torch._dynamo``,
    which imports Triton wherever it is installed; so the checks are that graphformer's kernel module stays unloaded
    and that graphformer imports and runs with Triton absent (``sys.modules['triton'] = None``).
    """
    code = (
        ("import sys; sys.modules['triton'] = None\n" if triton_absent else "")
        + "import sys, torch, graphformer, graphformer.ops.sparse, graphformer.ops.triton_attention as t\n"
        "assert 'graphformer.ops._triton_kernels' not in sys.modules, 'imported the Triton kernels eagerly'\n"
        "assert isinstance(t.available(), bool)\n"
        + ("assert t.available() is False\n" if triton_absent else "")
        + "assert graphformer.aggr.Sum()(torch.ones(3, 2), torch.tensor([0, 0, 1])).tolist() == [[2, 2], [1, 1]]\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), **ONE_THREAD}
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr


if __name__ == "__main__":
    torch.manual_seed(0)
    mode = sys.argv[1] if len(sys.argv) > 1 else "interpret"
    print(json.dumps(_run_cases(INTERPRETER_CASES if mode == "interpret" else COMPILER_CASES)))
