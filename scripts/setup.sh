#!/usr/bin/env bash
# Install graphformer and its dependencies into the current Python environment.
#   bash scripts/setup.sh            # library + example dependencies (extras `examples` and `molecules`: RDKit)
#   bash scripts/setup.sh test       # ... + test tools (pytest, hypothesis, ruff; triton where none is installed)
# torch: if one is already importable (e.g. a CUDA build) it is kept as it is; otherwise the pinned CPU
# build torch==$GRAPHFORMER_TORCH_VERSION (default 2.13.0) is installed first -- from PyTorch's CPU wheel index
# ($GRAPHFORMER_TORCH_INDEX) when it is reachable, else from the machine's configured index (offline mirrors) --
# so that resolving the other requirements never pulls the several-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="${GRAPHFORMER_TORCH_VERSION:-2.13.0}"
extras="examples,molecules"
[ "${1:-}" = "test" ] && extras="test"

CPU_INDEX="${GRAPHFORMER_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"

if "$PYTHON" -c "import torch" 2>/dev/null; then
    # an installed torch (e.g. a CUDA build) is never replaced; one older than setup.cfg's minimum is refused,
    # because resolving `torch>=2.4` would otherwise swap it out
    if ! "$PYTHON" -c "import sys, torch; v = tuple(int(p) for p in torch.__version__.split('+')[0].split('.')[:2]); sys.exit(v < (2, 4))"; then
        echo "setup: the installed torch $("$PYTHON" -c 'import torch; print(torch.__version__)') is older than 2.4;" \
             "upgrade it yourself (keeping your CUDA variant) or use a fresh environment" >&2
        exit 1
    fi
    echo "setup: keeping the installed torch $("$PYTHON" -c 'import torch; print(torch.__version__)')"
elif "$PYTHON" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/torch/', timeout=5)" \
        "$CPU_INDEX" 2>/dev/null; then
    echo "setup: no torch found; installing torch==$TORCH_VERSION (CPU build) from $CPU_INDEX"
    "$PYTHON" -m pip install --quiet "torch==$TORCH_VERSION" --index-url "$CPU_INDEX"
else
    # offline: the machine's own pip configuration (local wheels / mirror) provides the CPU build
    echo "setup: no torch found; $CPU_INDEX unreachable; installing torch==$TORCH_VERSION from the configured index"
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
