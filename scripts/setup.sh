#!/usr/bin/env bash
# Install graphformer and its dependencies into the current Python environment.
#   bash scripts/setup.sh            # library + example dependencies
#   bash scripts/setup.sh test       # ... + test tools (pytest, hypothesis, ruff; triton where none is installed)
# torch: if one is already importable (e.g. a CUDA build) it is kept as it is; otherwise the pinned CPU
# build torch==$GRAPHFORMER_TORCH_VERSION (default 2.13.0) is installed first, so that resolving the other
# requirements never pulls the several-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="${GRAPHFORMER_TORCH_VERSION:-2.13.0}"
extras="examples"
[ "${1:-}" = "test" ] && extras="test"

if "$PYTHON" -c "import torch" 2>/dev/null; then
    echo "setup: keeping the installed torch $("$PYTHON" -c 'import torch; print(torch.__version__)')"
else
    echo "setup: no torch found; installing torch==$TORCH_VERSION (CPU build)"
    "$PYTHON" -m pip install --quiet "torch==$TORCH_VERSION"
fi
"$PYTHON" -m pip install --quiet -e ".[$extras]"
# the fused kernel's tests run on CPU through triton's interpreter (>= 3.7). A CUDA torch brings the triton it
# was built with; that one is never replaced. Without any triton (CPU torch, Linux x86_64), install one.
if [ "$extras" = "test" ] && ! "$PYTHON" -c "import triton" 2>/dev/null \
        && [ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ]; then
    echo "setup: no triton found; installing triton>=3.7 for the kernel's interpreter tests"
    "$PYTHON" -m pip install --quiet "triton>=3.7" || echo "setup: triton unavailable; its tests will skip"
fi
echo "setup: done ($("$PYTHON" -c 'import torch, torch_geometric as g; print("torch", torch.__version__, "| torch_geometric", g.__version__)'))"
