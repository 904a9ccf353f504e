"""Persistence: state_dict round trips with weights_only=True, and outputs are identical across processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from graphformer import fully_connected
from tests.reliability.conftest import DIM, LAYERS, make

ROOT = Path(__file__).resolve().parents[2]
EDGES = torch.tensor([[0, 1, 2, 3, 3], [1, 2, 0, 0, 3]])


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_state_dict_round_trip_weights_only(name, tmp_path):
    layer = make(name, seed=1)
    path = tmp_path / "layer.pt"
    torch.save(layer.state_dict(), path)
    fresh = make(name, seed=2)
    fresh.load_state_dict(torch.load(path, weights_only=True))
    x = torch.randn(5, DIM)
    with torch.no_grad():
        assert torch.equal(fresh(x, EDGES), layer(x, EDGES))
        assert torch.equal(fresh(x, fully_connected(num_nodes=5)), layer(x, fully_connected(num_nodes=5)))


def test_outputs_identical_in_another_process(tmp_path):
    """Save model + input + output here; a fresh interpreter loads them and must reproduce the output bit for bit."""
    model = make("transformer", seed=3)
    x = torch.randn(6, DIM)
    batch = torch.tensor([0, 0, 0, 1, 1, 1])
    with torch.no_grad():
        out = model(x, fully_connected(batch))
    torch.save({"state": model.state_dict(), "x": x, "batch": batch, "out": out}, tmp_path / "ckpt.pt")
    script = textwrap.dedent(
        f"""
        import torch
        from graphformer import GraphTransformer, fully_connected
        saved = torch.load({str(tmp_path / "ckpt.pt")!r}, weights_only=True)
        model = GraphTransformer({DIM}, 2, 2, dim_feedforward=16, dropout=0.0, final_norm=True).eval()
        model.load_state_dict(saved["state"])
        with torch.no_grad():
            out = model(saved["x"], fully_connected(saved["batch"]))
        assert torch.equal(out, saved["out"]), (out - saved["out"]).abs().max()
        print("identical")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600,  # catches a hang
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "identical"
