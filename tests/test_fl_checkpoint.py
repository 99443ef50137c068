"""gradsparse.fl checkpoints: a damaged checkpoint (bit flip, truncation, empty, foreign,
a directory, unreadable) is refused on --resume with one ``error: ...`` line naming the
file (no traceback, nonzero exit), and a resume with another torch thread count is
refused (the count changes torch's numerics, so the records would change)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch", reason="gradsparse.fl runs experiments with torch")

from gradsparse.fl import checkpoint as ckpt  # noqa: E402
from gradsparse.fl import records as rec  # noqa: E402
from gradsparse.fl.__main__ import main as cli  # noqa: E402

ARGS = ["--data", "synthetic", "--model", "tiny", "--clients", "4", "--progress", "off", "--no-plot",
        "--set", "synthetic_train=120", "--set", "synthetic_test=40", "--set", "min_partition_size=5",
        "--method", "topk", "--ratio", "0.1", "--run-name", "r", "--set", "checkpoint=keep"]


def _args(out: str, rounds: int, threads: int = 1, *more: str):
    return ["run", *ARGS, "--out-dir", out, "--rounds", str(rounds), "--threads", str(threads), *more]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A run of 2 rounds (to resume) and an uninterrupted run of 3 (the reference records)."""
    base = tmp_path_factory.mktemp("fl")
    two, three = str(base / "two"), str(base / "three")
    assert cli(_args(two, 2)) == 0
    assert cli(_args(three, 3)) == 0
    return os.path.join(two, "r"), rec.strip_timing(rec.read(os.path.join(three, "r")))


def _copy(runs, tmp_path) -> str:
    out = str(tmp_path / "out")
    shutil.copytree(runs[0], os.path.join(out, "r"))
    return out


def test_resume_of_an_intact_checkpoint_gives_the_uninterrupted_records(runs, tmp_path, capsys):
    out = _copy(runs, tmp_path)
    assert cli(_args(out, 3, 1, "--resume")) == 0
    assert rec.strip_timing(rec.read(os.path.join(out, "r"))) == runs[1]
    # the file is the integrity-checked format: magic line, header, payload
    with open(os.path.join(out, "r", "checkpoint.pt"), "rb") as fh:
        assert fh.read(len(ckpt.MAGIC)) == ckpt.MAGIC


def _flip_middle(path: str) -> None:
    with open(path, "r+b") as fh:
        data = bytearray(fh.read())
        data[len(data) // 2] ^= 0x10
        fh.seek(0)
        fh.write(data)


def _truncate(path: str) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(os.path.getsize(path) * 2 // 3)


def _empty(path: str) -> None:
    open(path, "wb").close()


def _random(path: str) -> None:
    with open(path, "wb") as fh:
        fh.write(os.urandom(4096))


def _foreign(path: str) -> None:  # a plain torch.save file (no integrity header)
    torch.save({"round": 2}, path)


def _json(path: str) -> None:
    with open(path, "w") as fh:
        json.dump({"round": 2}, fh)


def _directory(path: str) -> None:
    os.remove(path)
    os.mkdir(path)


def _broken_link(path: str) -> None:  # must not count as "no checkpoint" (a fresh start would wipe records)
    os.remove(path)
    os.symlink(path + ".gone", path)


DAMAGE = {"bit_flip": _flip_middle, "truncated": _truncate, "empty": _empty, "random_bytes": _random,
          "torch_save_format": _foreign, "json": _json, "directory": _directory, "broken_link": _broken_link}


@pytest.mark.parametrize("how", sorted(DAMAGE))
def test_damaged_checkpoint_is_refused_naming_the_file(runs, tmp_path, capsys, how):
    out = _copy(runs, tmp_path)
    path = os.path.join(out, "r", "checkpoint.pt")
    before = rec.read(os.path.join(out, "r"))
    DAMAGE[how](path)
    capsys.readouterr()
    assert cli(_args(out, 3, 1, "--resume")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: checkpoint: ") and path in err, err
    assert err.count("\n") == 1, err
    assert rec.read(os.path.join(out, "r")) == before  # nothing was run or rewritten


def test_unreadable_checkpoint_is_refused_naming_the_file(runs, tmp_path, capsys, monkeypatch):
    out = _copy(runs, tmp_path)
    path = os.path.join(out, "r", "checkpoint.pt")
    if os.geteuid() != 0:
        os.chmod(path, 0)
    else:  # root reads any file: make opening it fail as it would for another user
        real_open = open

        def refusing_open(p, *a, **k):
            if os.fspath(p) == path:
                raise PermissionError(13, "Permission denied", p)
            return real_open(p, *a, **k)
        monkeypatch.setattr(ckpt, "open", refusing_open, raising=False)
    capsys.readouterr()
    assert cli(_args(out, 3, 1, "--resume")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: checkpoint: cannot read ") and path in err and "ermission denied" in err, err


def test_damaged_config_is_refused_naming_the_file(runs, tmp_path, capsys):
    out = _copy(runs, tmp_path)
    path = os.path.join(out, "r", "config.json")
    with open(path, "w") as fh:
        fh.write('{"seed": 0, "method": "top')
    capsys.readouterr()
    assert cli(_args(out, 3, 1, "--resume")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and path in err, err


def test_bit_flipped_checkpoint_stops_the_command_line(runs, tmp_path):
    """The real ``python -m gradsparse.fl``: exit status 2, one error line, no traceback."""
    out = _copy(runs, tmp_path)
    path = os.path.join(out, "r", "checkpoint.pt")
    _flip_middle(path)
    p = subprocess.run([sys.executable, "-m", "gradsparse.fl", *_args(out, 3, 1, "--resume")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr and f"error: checkpoint: {path!r}" in p.stderr, p.stderr


def test_checkpoint_reader_checks_size_and_digest(tmp_path):
    path = str(tmp_path / "c")
    ckpt.write(path, b"payload bytes")
    assert ckpt.read(path) == b"payload bytes"
    with open(path, "ab") as fh:
        fh.write(b"x")
    with pytest.raises(ValueError, match="longer than its header says"):
        ckpt.read(path)
    with pytest.raises(ValueError, match="cannot read"):
        ckpt.read(str(tmp_path / "missing"))
    assert os.listdir(tmp_path) == ["c"]  # no temporary files left behind


def test_resume_with_another_thread_count_is_refused(runs, tmp_path, capsys):
    out = _copy(runs, tmp_path)
    capsys.readouterr()
    assert cli(_args(out, 3, 2, "--resume")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: threads: ") and "--threads 1" in err, err
    assert len(rec.read(os.path.join(out, "r"))) == 2
    # leaving --threads out resumes with the run's own count, and gives the uninterrupted records
    args = _args(out, 3, 1, "--resume")
    i = args.index("--threads")
    del args[i:i + 2]
    assert cli(args) == 0
    assert rec.strip_timing(rec.read(os.path.join(out, "r"))) == runs[1]
