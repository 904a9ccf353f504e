import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_runs_and_reports_equivalence():
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), "--epochs", "3", "--seeds", "1"],
        capture_output=True, text=True, timeout=900, cwd=ROOT,  # catches a hang; a busy machine takes < 5 min
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
             "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert "max |difference|, implicit fully_connected(batch)" in result.stdout
    for model in ("graphconv-mean", "gat", "transformer", "transformer-complete"):
        assert model in result.stdout
