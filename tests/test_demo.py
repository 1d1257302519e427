"""The main job: `nnkern demo --quick` runs end to end in a fresh process, and the digits example
reaches the accuracy its docstring promises."""

import math
import os
import re
import subprocess
import sys

import numpy as np

import nnkern as nk


def _env_with_nnkern():
    """The environment plus PYTHONPATH pointing at the directory that holds this nnkern package
    (the source tree's python/ or site-packages), so the subprocess imports the same build."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(nk.__file__)))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def test_demo_quick_runs_and_reports(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "nnkern", "demo", "--quick", "--no-progress"], cwd=tmp_path,
                          env=_env_with_nnkern(), capture_output=True, text=True, timeout=600)
    out = proc.stdout
    assert proc.returncode == 0, f"demo exited {proc.returncode}\nstdout:\n{out}\nstderr:\n{proc.stderr}"
    assert out.startswith(f"nnkern {nk.__version__} demo: ")
    assert "== 1/2  CNN on the 1,797 UCI handwritten digits" in out
    m = re.search(r"^digits CNN: test accuracy (\d\.\d{4}) on (\d+) held-out images after (\d+) epochs", out, re.M)
    assert m, out
    acc, n_test, epochs = float(m.group(1)), int(m.group(2)), int(m.group(3))
    assert n_test == 450 and epochs == 4
    assert acc >= 0.8, f"4 epochs should already classify most digits, got {acc}"
    assert "== 2/2  character-level LSTM language model" in out
    m = re.search(r"^char LSTM: validation loss (\S+) nats/char, vocabulary (\d+)", out, re.M)
    assert m, out
    val_loss, vocab = float(m.group(1)), int(m.group(2))
    assert math.isfinite(val_loss) and val_loss < math.log(vocab), "worse than a uniform guess"
    sample = out.split("Sample at temperature 0.8:\n", 1)[1]
    assert sample.lstrip("\n").startswith("ROMEO:\n") and len(sample.strip()) >= 150
    # the plot goes to the working directory when matplotlib is installed, and is announced
    plot = tmp_path / "nnkern-demo-curves.png"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "training curves saved" not in out
    else:
        assert "training curves saved to nnkern-demo-curves.png" in out
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_digits_cnn_reaches_97_percent():
    from nnkern.examples import digits_cnn

    res = digits_cnn.run(epochs=20, progress=False)
    assert res["test_accuracy"] >= 0.97, res["test_accuracy"]
    hist = res["history"]
    assert hist.epochs == 20
    assert hist["loss"][-1] < 0.5 * hist["loss"][0]
    assert np.all(np.isfinite(hist["val_loss"]))
