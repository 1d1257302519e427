"""nk.save / nk.load: round trip, atomic writes, clear errors for corrupt or mismatched files."""

import os

import numpy as np
import pytest

import nnkern as nk
from nnkern.checkpoint import CheckpointError


def make_model(seed=0):
    nk.manual_seed(seed)
    return nk.nn.Sequential(nk.nn.Linear(4, 3), nk.nn.Linear(3, 2))


def test_roundtrip_model_and_extras(tmp_path):
    m = make_model(0)
    path = tmp_path / "ck.npz"
    nk.save(path, m, epoch=3, note="hello", curve=np.arange(5.0))
    m2 = make_model(1)
    assert not np.array_equal(m2[0].weight.data, m[0].weight.data)
    extras = nk.load(path, m2)
    for (k, a), (_, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=k)
    assert extras["epoch"] == 3 and extras["note"] == "hello"
    np.testing.assert_array_equal(extras["curve"], np.arange(5.0))
    assert not any(f.name.startswith(".tmp-") for f in tmp_path.iterdir())


def test_mismatched_architecture_names_keys_and_shapes(tmp_path):
    path = tmp_path / "ck.npz"
    nk.save(path, make_model())
    other = nk.nn.Sequential(nk.nn.Linear(4, 5), nk.nn.Linear(5, 2), nk.nn.Linear(2, 2))
    with pytest.raises(CheckpointError) as err:
        nk.load(path, other)
    msg = str(err.value)
    assert "0.weight: checkpoint (3, 4) vs model (5, 4)" in msg
    assert "missing keys: 2.weight, 2.bias" in msg


def test_corrupt_and_foreign_files(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(CheckpointError, match="is not a readable nnkern checkpoint"):
        nk.load(bad, make_model())
    truncated = tmp_path / "trunc.npz"
    nk.save(truncated, make_model())
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="is not a readable nnkern checkpoint"):
        nk.load(truncated, make_model())
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, a=np.zeros(3))
    with pytest.raises(CheckpointError, match="not an nnkern checkpoint"):
        nk.load(foreign, make_model())
    with pytest.raises(FileNotFoundError):
        nk.load(tmp_path / "missing.npz", make_model())


def test_killed_save_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "ck.npz"
    m = make_model(0)
    nk.save(path, m, epoch=1)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        # write part of a file, then die as a killed process would
        args[0].write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt("simulated kill during save")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        nk.save(path, make_model(5), epoch=2)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert nk.load(path, make_model(3))["epoch"] == 1
    assert [f.name for f in tmp_path.iterdir()] == ["ck.npz"]


def test_killed_process_during_save(tmp_path):
    # a real SIGKILL in the middle of writing: the previous file must stay loadable
    import signal
    import subprocess
    import sys
    import textwrap

    path = tmp_path / "ck.npz"
    nk.save(path, make_model(0), epoch=1)
    code = textwrap.dedent(f"""
        import os, signal, numpy as np, nnkern as nk
        real = np.savez
        def slow(f, **arrays):
            f.write(b"PK partial data")
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        np.savez = slow
        nk.save({str(path)!r}, nk.nn.Linear(4, 3), epoch=2)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert nk.load(path, make_model(1))["epoch"] == 1


def test_extra_must_be_serialisable(tmp_path):
    with pytest.raises(TypeError, match="extra 'obj' is neither an array nor JSON-serialisable"):
        nk.save(tmp_path / "x.npz", make_model(), obj=object())
