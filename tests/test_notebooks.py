"""The notebooks (jupytext percent-format .py files in notebooks/) run as
plain scripts at their small default scale, with a non-interactive
matplotlib backend, and leave their figures behind. They must stay thin:
public API only, the runtime report in the first code cell."""

import glob
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "[0-9]*.py")))
FIGURES = {"01_kernel_ablation": ["throughput.png", "cache_misses.png"], "02_baselines": ["convergence.png"],
           "03_lsh_quality": ["lsh_recall.png", "accuracy_frontier.png", "accuracy_frontier_lsh.png"]}


def test_the_three_notebooks_exist():
    names = {os.path.splitext(os.path.basename(p))[0] for p in NOTEBOOKS}
    assert set(FIGURES) <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: os.path.basename(p))
def test_notebook_is_a_thin_percent_script(path):
    text = open(path).read()
    assert "format_name: percent" in text and "# %%" in text
    cells = [c for c in re.split(r"^# %%.*$", text, flags=re.M)[1:] if c.strip()]
    code = [c for c in cells if not c.lstrip().startswith("# ")]
    assert "show_runtime()" in code[0], "the first code cell shows the runtime report"
    assert "kernels._core" not in text and "from kernels" not in text, "notebooks use the public API only"
    assert "SLIDE_NOTEBOOK_SCALE" in text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: os.path.basename(p))
def test_notebook_runs_at_small_scale(path, tmp_path):
    if os.path.basename(path).startswith("02"):
        pytest.importorskip("workbench.baselines")
    env = dict(os.environ, MPLBACKEND="Agg", SLIDE_NOTEBOOK_SCALE="small", SLIDE_NOTEBOOK_OUT=str(tmp_path),
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, path], capture_output=True, text=True, cwd=str(tmp_path), env=env,
                       timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert '"capabilities"' in r.stdout  # the runtime report was printed
    name = os.path.splitext(os.path.basename(path))[0]
    for fig in FIGURES.get(name, []):
        assert glob.glob(os.path.join(str(tmp_path), f"{name}-small", "figures", fig)), fig
