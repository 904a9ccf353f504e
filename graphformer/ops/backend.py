r"""Which kernel runs :func:`~graphformer.ops.sparse.sparse_attention`: the fused Triton kernel or PyTorch.

The fused kernel (:func:`graphformer.ops.triton_attention.fused_attention`) is tested through Triton's interpreter
and compiled for CUDA, but it has not run on every GPU. So by default (``"auto"``) the first call that would use it
on a ``(device, dtype)`` runs a **self-check**: the kernel and the PyTorch path
(:class:`~graphformer.ops.sparse.SparseAttention`) on a small random graph, forward and gradients of ``q``, ``k``,
``v`` and the bias, compared with a tolerance suited to the dtype. On a mismatch or any exception (compile or
launch error) that ``(device, dtype)`` uses PyTorch for the rest of the process, with one
:class:`SparseBackendWarning` that says why. The result is cached per ``(device, dtype)``.

The choice, first match wins:

1. :func:`sparse_backend` ``("auto" | "triton" | "torch")``, a context manager (this thread only);
2. :func:`set_sparse_backend` (the whole process; ``None`` clears it);
3. the environment variable ``GRAPHFORMER_SPARSE_BACKEND`` (read at each call);
4. ``"auto"``.

``"torch"`` never uses Triton. ``"triton"`` skips the self-check and runs the kernel for every call it supports;
Triton must be importable and the tensors on CUDA (or on CPU with ``TRITON_INTERPRET=1``, Triton's interpreter),
otherwise the call raises ``RuntimeError``. Whatever the choice, calls the kernel does not support (attention
dropout, returned weights, bipartite graphs, ``torch.use_deterministic_algorithms(True)``, and while
``torch.compile`` / ``torch.export`` trace) take the PyTorch path.

:func:`last_sparse_backend` reports the path of this thread's latest ``sparse_attention`` call: ``"triton"`` or
``"torch"`` (``None`` before the first; not updated while tracing).
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import warnings
from collections.abc import Iterator
from typing import Literal

import torch
from torch import Tensor

ENV_VAR = "GRAPHFORMER_SPARSE_BACKEND"
BACKENDS = ("auto", "triton", "torch")
Backend = Literal["auto", "triton", "torch"]

# (atol, rtol) of the self-check per input dtype: the kernel and PyTorch sum in different orders
TOLERANCES = {
    torch.float64: (1e-10, 1e-8),
    torch.float32: (1e-4, 1e-3),
    torch.float16: (2e-2, 2e-2),
    torch.bfloat16: (6e-2, 6e-2),
}


class SparseBackendWarning(RuntimeWarning):
    """The fused Triton kernel failed its self-check on a (device, dtype); PyTorch runs there instead."""


_process_choice: str | None = None  # set_sparse_backend
_thread = threading.local()  # .choice: sparse_backend(); .last: the latest call's path
_checked: dict[tuple[torch.device, torch.dtype], bool] = {}  # self-check verdicts
_check_lock = threading.Lock()
_auto_uses_interpreter = False  # tests: let "auto" run the kernel on CPU tensors under TRITON_INTERPRET=1


def _parse(value: str, source: str) -> Backend:
    choice = value.strip().lower() if isinstance(value, str) else value
    if choice not in BACKENDS:
        raise ValueError(f"{source} must be one of {', '.join(repr(b) for b in BACKENDS)}; got {value!r}")
    return choice  # type: ignore[return-value]


def set_sparse_backend(backend: Backend | None) -> None:
    """Choose the sparse-attention kernel for the whole process: ``"auto"`` (self-checked Triton where it can
    run, else PyTorch), ``"triton"`` (forced, no self-check) or ``"torch"``; ``None`` goes back to
    ``GRAPHFORMER_SPARSE_BACKEND`` / ``"auto"``. A :func:`sparse_backend` block takes precedence in its thread."""
    global _process_choice
    _process_choice = None if backend is None else _parse(backend, "set_sparse_backend(backend=...)")


@contextlib.contextmanager
def sparse_backend(backend: Backend) -> Iterator[None]:
    """Within the block (this thread only), use ``backend`` (``"auto"``, ``"triton"`` or ``"torch"``).

    Example::

        with graphformer.ops.sparse_backend("torch"):
            out = layer(x, edge_index)
    """
    choice = _parse(backend, "sparse_backend(backend=...)")
    previous = getattr(_thread, "choice", None)
    _thread.choice = choice
    try:
        yield
    finally:
        _thread.choice = previous


def get_sparse_backend() -> Backend:
    """The choice in effect in this thread: :func:`sparse_backend`, else :func:`set_sparse_backend`, else
    ``GRAPHFORMER_SPARSE_BACKEND``, else ``"auto"``. An unknown value of the variable raises ``ValueError``."""
    choice = getattr(_thread, "choice", None) or _process_choice
    if choice is not None:
        return choice  # type: ignore[return-value]
    value = os.environ.get(ENV_VAR)
    if value is None or value == "":
        return "auto"
    return _parse(value, f"the environment variable {ENV_VAR}")


def last_sparse_backend() -> Literal["triton", "torch"] | None:
    """Which path this thread's latest :func:`~graphformer.ops.sparse.sparse_attention` call ran: ``"triton"``
    (the fused kernel) or ``"torch"`` (:class:`~graphformer.ops.sparse.SparseAttention`); ``None`` before any.

    Layers reach ``sparse_attention`` on explicit edges (and on long sparse block structures on CPU); the dense
    block path does not update it."""
    return getattr(_thread, "last", None)


def record(path: Literal["triton", "torch"]) -> None:
    """Note the path of the current call (for :func:`last_sparse_backend`); skipped while tracing."""
    if not torch.compiler.is_compiling():
        _thread.last = path


def _interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def use_fused(value: Tensor, supported: bool) -> bool:
    """Whether ``sparse_attention`` runs the fused kernel for a call on ``value``'s device and dtype.

    ``supported``: the call is one the kernel computes (no dropout, no returned weights, ``N_dst = N_src``).
    Runs the self-check on the first ``"auto"`` call per ``(device, dtype)``; raises ``RuntimeError`` when
    ``"triton"`` is forced where it cannot run, ``ValueError`` for an unknown ``GRAPHFORMER_SPARSE_BACKEND``.
    """
    if torch.compiler.is_compiling() or torch.compiler.is_exporting():
        return False
    choice = get_sparse_backend()
    if choice == "torch" or not supported or torch.are_deterministic_algorithms_enabled():
        return False  # deterministic mode: the kernel's backward sums with atomic adds
    from graphformer.ops import triton_attention

    on_cpu_interpreter = value.device.type == "cpu" and _interpreted()
    if choice == "triton":
        if not triton_attention.available():
            raise RuntimeError(
                f"the sparse-attention backend is forced to 'triton' ({_source()}), but triton cannot be imported; "
                "install triton, or choose 'auto' or 'torch'"
            )
        if not (value.is_cuda or on_cpu_interpreter):
            raise RuntimeError(
                f"the sparse-attention backend is forced to 'triton' ({_source()}), but the tensors are on "
                f"{value.device}: the Triton kernel runs on CUDA (on CPU only under Triton's interpreter, "
                "TRITON_INTERPRET=1); choose 'auto' or 'torch'"
            )
        return True
    if not (value.is_cuda or (on_cpu_interpreter and _auto_uses_interpreter)) or not triton_attention.available():
        return False
    key = (value.device, value.dtype)
    verdict = _checked.get(key)
    if verdict is None:
        with _check_lock:
            verdict = _checked.get(key)
            if verdict is None:
                problem = self_check(value.device, value.dtype)
                verdict = _checked[key] = problem is None
                if problem is not None:
                    _warn(value.device, value.dtype, f"failed its self-check: {problem}")
    return verdict


def fused_failed(value: Tensor, error: Exception) -> bool:
    """After the fused kernel raised on ``value``'s (device, dtype): under ``"auto"``, use PyTorch there from now
    on (one warning) and return True; when ``"triton"`` is forced, return False (the caller re-raises)."""
    if get_sparse_backend() == "triton":
        return False
    key = (value.device, value.dtype)
    with _check_lock:
        first = _checked.get(key, True)
        _checked[key] = False
    if first:
        _warn(value.device, value.dtype, f"raised {_describe(error)}")
    return True


def _source() -> str:
    if getattr(_thread, "choice", None) is not None:
        return "graphformer.ops.sparse_backend"
    if _process_choice is not None:
        return "graphformer.ops.set_sparse_backend"
    return f"{ENV_VAR}={os.environ.get(ENV_VAR)}"


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300] if text else ''}"


def _warn(device: torch.device, dtype: torch.dtype, why: str) -> None:
    warnings.warn(
        f"graphformer: the fused Triton sparse-attention kernel {why}. Using the PyTorch path (SparseAttention) on "
        f"{device} for {dtype} for the rest of this process. To choose a path yourself, set {ENV_VAR}=torch "
        f"(or =triton to force the kernel without the check), or call graphformer.ops.set_sparse_backend(...).",
        SparseBackendWarning,
        stacklevel=4,
    )


def _reset() -> None:
    """Forget the self-check verdicts (for tests)."""
    with _check_lock:
        _checked.clear()


def self_check(device: torch.device | str, dtype: torch.dtype) -> str | None:
    """Run the fused kernel and the PyTorch path on a small random graph on ``device`` in ``dtype`` (scores from
    ``q``, ``k`` and a bias, and from the bias alone); ``None`` when the outputs and the gradients of ``q``, ``k``,
    ``v`` and the bias agree within :data:`TOLERANCES`, else what went wrong (the largest error, or the exception)."""
    device = torch.device(device)
    try:
        with torch.inference_mode(False), torch.enable_grad(), torch.autocast(device.type, enabled=False):
            return _compare(device, dtype)
    except Exception as error:  # compile, launch or any other failure of the kernel
        return _describe(error)


def _compare(device: torch.device, dtype: torch.dtype) -> str | None:
    from graphformer.ops import triton_attention
    from graphformer.ops.sparse import SparseAttention, csr_order

    atol, rtol = TOLERANCES.get(dtype, TOLERANCES[torch.float16])
    num_nodes, heads, channels = 7, 2, 12  # C = 12 is masked up to a block of 16
    gen = torch.Generator().manual_seed(0)
    source = torch.randint(0, num_nodes, (40,), generator=gen)
    target = torch.cat([torch.zeros(33, dtype=torch.long), torch.randint(1, num_nodes - 1, (7,), generator=gen)])
    edge_index = torch.stack([source, target]).to(device)  # node 0 has 33 in-edges (two blocks); the last none
    _, source, target = csr_order(edge_index)
    inputs = [torch.randn(num_nodes, heads, channels, generator=gen) for _ in range(3)]  # q, k, v
    inputs.append(torch.randn(source.numel(), heads, generator=gen))  # bias [E, H], CSR order
    grad = torch.randn(num_nodes, heads, channels, generator=gen)
    scale = 1.0 / math.sqrt(channels)
    for with_qk in (True, False):
        query, key, value, bias = (t.to(device=device, dtype=dtype).requires_grad_() for t in inputs)
        fused_inputs: list[Tensor | None] = [query, key, value, bias] if with_qk else [None, None, value, bias]
        out = triton_attention.fused_attention(fused_inputs[0], fused_inputs[1], value, bias, source, target, scale)
        wanted = [t for t in fused_inputs if t is not None]
        got = [out, *torch.autograd.grad(out, wanted, grad.to(device=device, dtype=dtype))]
        # the reference: PyTorch in float32 (float64 for float64), as sparse_attention computes half precision
        ref_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        ref_inputs = [None if t is None else t.detach().to(ref_dtype).requires_grad_() for t in fused_inputs]
        ref = SparseAttention.apply(*ref_inputs, source, target, scale)
        wanted = [t for t in ref_inputs if t is not None]
        want = [ref, *torch.autograd.grad(ref, wanted, grad.to(device=device, dtype=ref_dtype))]
        names = ["output", *(["grad of q", "grad of k"] if with_qk else []), "grad of v", "grad of bias"]
        for name, g, w in zip(names, got, want):
            if g is None or g.shape != w.shape:
                return f"{name}: shape {None if g is None else tuple(g.shape)}, expected {tuple(w.shape)}"
            g, w = g.detach().double(), w.detach().double()
            error = (g - w).abs()
            if not bool(torch.isfinite(g).all()) or bool((error > atol + rtol * w.abs()).any()):
                scores = "q.k + bias" if with_qk else "bias only"
                return (f"{name} ({scores} scores): max abs error {error.max().item():.3g} exceeds the {dtype} "
                        f"tolerance atol={atol:g} + rtol={rtol:g} * |reference|")
    return None
