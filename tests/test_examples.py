"""Every example in examples/ runs at the smoke budget and ends in a figure.

Each script runs in a fresh interpreter (as sphinx-gallery runs it in the docs
build, and as a user runs it) with ``SKOOD_EXAMPLES_SMOKE=1`` and matplotlib's
Agg backend. A small wrapper runs it with :func:`runpy.run_path`, then saves
every open figure as a PNG and records its layout engine: the test checks that
the script exited cleanly, produced at least one figure, and laid every figure
out with constrained layout (so no axis or tick label is clipped).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.py"))

# Runs the script given as argv[1] as __main__, then saves its figures into argv[2]
# and writes a JSON list of (file, layout engine) there.
_WRAPPER = """
import json, runpy, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
script, out = sys.argv[1], sys.argv[2]
sys.argv = [script]
runpy.run_path(script, run_name="__main__")
figures = []
for num in plt.get_fignums():
    fig = plt.figure(num)
    engine = fig.get_layout_engine()
    path = f"{out}/figure_{num}.png"
    fig.savefig(path)
    figures.append({"file": path, "layout": type(engine).__name__ if engine else None})
with open(f"{out}/figures.json", "w") as f:
    json.dump(figures, f)
"""


def test_gallery_is_complete():
    """The gallery has its header and every example is a sphinx-gallery script with a title."""
    assert (EXAMPLES_DIR / "GALLERY_HEADER.rst").is_file()
    assert len(EXAMPLES) >= 10
    for script in EXAMPLES:
        assert script.name.startswith("plot_"), script.name
        text = script.read_text()
        assert text.startswith('"""\n'), f"{script.name}: no module docstring first"
        lines = text.splitlines()
        title, underline = lines[1], lines[2]
        assert title and set(underline) == {"="} and len(underline) >= len(title), script.name
        smoke_line = 'smoke = os.environ.get("SKOOD_EXAMPLES_SMOKE") == "1"'
        assert smoke_line in lines, f"{script.name}: no smoke line"
        assert "# %%" in text, f"{script.name}: no sphinx-gallery cells"
        assert "skood._" not in text and "from ._" not in text, f"{script.name}: private import"


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(script, tmp_path):
    env = {**os.environ, "SKOOD_EXAMPLES_SMOKE": "1", "MPLBACKEND": "Agg"}
    env.setdefault("OMP_NUM_THREADS", "1")
    res = subprocess.run(
        [sys.executable, "-c", _WRAPPER, str(script), str(tmp_path)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert figures, f"{script.name} made no figure"
    for fig in figures:
        assert Path(fig["file"]).stat().st_size > 1000, fig
        assert fig["layout"] == "ConstrainedLayoutEngine", (
            f"{script.name}: a figure without constrained layout ({fig['layout']}) may clip labels"
        )
