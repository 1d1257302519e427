"""The README opens with the two commands CI runs (.ci/run extracts them from the first sh block)."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_readme_starts_with_two_commands():
    if not (ROOT / ".ci" / "run").exists() or not (ROOT / "README.md").exists():
        pytest.skip("not in the source tree (running against an installed copy)")
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"^```sh\n(.*?)^```", readme, re.S | re.M)
    assert block, "README.md must have a ```sh block"
    cmds = [ln for ln in block.group(1).splitlines() if ln.strip() and not ln.startswith("#")]
    assert len(cmds) == 2, cmds
    assert "pip install" in cmds[0] and "nnkern" in cmds[0]
    assert "pip install" in cmds[1] and "pytest" in cmds[1]
    # it is the first block of the file, right after the introduction
    assert readme.index("```sh") < readme.index("## ")


def test_readme_training_loop_runs_and_learns():
    """The README's Python example is real code: run it and check that it learned the digits."""
    if not (ROOT / "README.md").exists():
        pytest.skip("README.md is not next to the tests (running against an installed copy)")
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"```python\n(.*?)```", readme, re.S)
    if m is None:
        return
    ns = {}
    exec(compile(m.group(1), "README.md", "exec"), ns)
    nk, model, x, y = ns["nk"], ns["model"], ns["x"], ns["y"]
    model.eval()
    acc = float((model(x).argmax(1) == y).mean())
    assert acc > 0.95, acc  # training accuracy after 10 epochs
