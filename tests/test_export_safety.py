"""Export never removes, replaces or follows what it did not create, and leaves files anyone can read.

One real trained run is shared by the module; every target below is checked to be byte-for-byte unchanged after
a refused export, and no temp file or staging folder may be left beside it.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from core import atomic
from core.analysis import export as ex
from core.errors import UserError
from core.training import runs
from tests.helpers import module_run

REPO = Path(__file__).resolve().parents[1]
UMASK = 0o777 & ~atomic.DIR_MODE


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return module_run(tmp_path_factory, "export-safety")


@pytest.fixture
def run(shared, monkeypatch) -> runs.Run:
    root, _, trained = shared
    monkeypatch.setenv("CONVNET_DATA_DIR", str(root / "data"))
    monkeypatch.setenv("CONVNET_RUNS_DIR", str(root / "runs"))
    return runs.get_run(trained.run_id)


def snapshot(folder: Path) -> dict[str, object]:
    """Every entry under `folder` with what it is: bytes of files, targets of links, a marker for folders."""
    out: dict[str, object] = {}
    for p in sorted(folder.rglob("*")):
        key = p.relative_to(folder).as_posix()
        if p.is_symlink():
            out[key] = ("link", os.readlink(p))
        elif p.is_dir():
            out[key] = "dir"
        elif p.is_file():
            out[key] = p.read_bytes()
        else:
            out[key] = ("special", stat.S_IFMT(p.lstat().st_mode))
    return out


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if atomic.TEMP_MARK in p.name or ".old." in p.name]


def modes(root: Path) -> set[tuple[str, int]]:
    """(kind, permission bits) of a file or every entry of a tree."""
    paths = [root, *root.rglob("*")] if root.is_dir() else [root]
    return {("dir" if p.is_dir() else "file", stat.S_IMODE(p.stat().st_mode)) for p in paths}


def cli(env_root: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CONVNET_DATA_DIR": str(env_root / "data"), "CONVNET_RUNS_DIR": str(env_root / "runs"),
           "PYTHONPATH": str(REPO)}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=240)  # fmt: skip


def test_savedmodel_into_a_full_folder_writes_a_new_sub_folder_and_keeps_every_file(run, tmp_path):
    data = tmp_path / "data"  # as `--out data` next to the datasets: the old code deleted this whole folder
    (data / "cats" / "train").mkdir(parents=True)
    (data / "cats" / "train" / "a.png").write_bytes(b"\x89PNG not really")
    (data / ".catalog.json").write_text("{}")
    (data / "notes.txt").write_text("mine")
    before = snapshot(data)

    out = ex.export(run.path, "savedmodel", data)

    assert out == data / ex.default_name(run.run_id, "savedmodel")
    assert (out / "saved_model.pb").is_file()
    after = snapshot(data)
    assert {k: v for k, v in after.items() if k in before} == before
    assert {k.split("/")[0] for k in after if k not in before} == {out.name}
    assert leftovers(tmp_path) == []
    assert modes(out) == {("dir", atomic.DIR_MODE), ("file", atomic.FILE_MODE)}

    with pytest.raises(UserError, match="already exists; choose a new name"):
        ex.export(run.path, "savedmodel", data)  # the sub-folder's name is taken now: refuse, never replace
    assert snapshot(data) == after and leftovers(tmp_path) == []


def _regular(tmp_path: Path) -> Path:
    p = tmp_path / "model.keras"
    p.write_bytes(b"someone else's file")
    return p


def _link_to_file(tmp_path: Path) -> Path:
    (tmp_path / "precious.txt").write_text("keep me")
    (tmp_path / "link.keras").symlink_to(tmp_path / "precious.txt")
    return tmp_path / "link.keras"


def _dangling(tmp_path: Path) -> Path:
    (tmp_path / "dangling.keras").symlink_to(tmp_path / "nowhere" / "x.keras")
    return tmp_path / "dangling.keras"


def _link_to_folder(tmp_path: Path) -> Path:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "kept.txt").write_text("kept")
    (tmp_path / "folder-link").symlink_to(tmp_path / "real", target_is_directory=True)
    return tmp_path / "folder-link"


def _fifo(tmp_path: Path) -> Path:
    os.mkfifo(tmp_path / "pipe.keras")
    return tmp_path / "pipe.keras"


TARGETS = {
    "regular file": (_regular, "already exists; choose a new name"),
    "symlink to a file": (_link_to_file, "is a symbolic link"),
    "dangling symlink": (_dangling, "is a symbolic link"),
    "symlink to a folder": (_link_to_folder, "is a symbolic link"),
    "fifo": (_fifo, "is not a regular file"),
}


@pytest.mark.parametrize("fmt", ["keras", "tflite"])
@pytest.mark.parametrize("what", list(TARGETS))
def test_an_existing_file_link_or_fifo_is_refused_and_left_alone(run, tmp_path, what, fmt):
    if what == "fifo" and not hasattr(os, "mkfifo"):
        pytest.skip("no fifos on this system")
    make, message = TARGETS[what]
    target = make(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(UserError, match=message):
        ex.export(run.path, fmt, target)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("device", ["/dev/null", "/dev/full"])
def test_a_device_is_refused_and_left_alone(run, device):
    if not os.path.exists(device):
        pytest.skip(f"no {device} here")
    before = os.lstat(device)
    with pytest.raises(UserError, match=f"^{device} is not a regular file; choose a new name$"):
        ex.export(run.path, "keras", Path(device))
    after = os.lstat(device)
    assert stat.S_ISCHR(after.st_mode) and (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)
    assert leftovers(Path("/dev")) == []


def test_default_export_goes_inside_the_run_and_never_overwrites(run):
    first = ex.export(run.path, "keras")
    assert first == run.path / "exports" / f"{run.run_id}.keras"
    first.write_bytes(b"edited by the user")  # an earlier export, changed since: still never overwritten
    second = ex.export(run.path, "keras")
    third = ex.export(run.path, "tflite-quant")
    assert second == run.path / "exports" / f"{run.run_id}-2.keras"
    assert second.read_bytes() == run.model_path.read_bytes()
    assert first.read_bytes() == b"edited by the user"
    assert third == run.path / "exports" / f"{run.run_id}_quant.tflite"
    assert modes(second) == modes(third) == {("file", atomic.FILE_MODE)}
    assert leftovers(run.path) == []


def test_nothing_is_created_when_the_run_has_no_usable_model(tmp_path):
    run_dir = tmp_path / "runs" / "broken"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text('{"run_id": "broken"}')
    with pytest.raises(UserError, match="has no saved model yet"):
        ex.export(run_dir, "savedmodel")
    (run_dir / "model.keras").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="the model of run broken is not a .keras model file"):
        ex.export(run_dir, "savedmodel")
    with pytest.raises(UserError, match="folder .*missing does not exist"):
        ex.export(run_dir, "keras", tmp_path / "missing" / "m.keras")
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json", "model.keras"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "runs"]


def test_a_trained_run_and_its_exports_have_normal_permissions(run, tmp_path):
    assert UMASK & 0o044 == 0, "this check needs a umask that lets others read (e.g. 022)"
    for name in ("config.json", "status.json", "progress.jsonl", "model.keras"):
        assert modes(run.path / name) == {("file", atomic.FILE_MODE)}, name
    assert modes(run.path) >= {("dir", atomic.DIR_MODE)}
    bundle = ex.export(run.path, "bundle", tmp_path / "b.zip")
    assert modes(bundle) == {("file", atomic.FILE_MODE)}
    import zipfile

    with zipfile.ZipFile(bundle) as zf:  # members keep the modes they were zipped with
        member_modes = {(i.is_dir(), (i.external_attr >> 16) & 0o777) for i in zf.infolist()}
    assert member_modes <= {(True, atomic.DIR_MODE), (False, atomic.FILE_MODE)}


def test_cli_default_and_refusals(shared, tmp_path):
    root, _, trained = shared
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    out = cli(root, "export", "--run", trained.run_id, "--format", "keras", cwd=cwd)
    assert out.returncode == 0, out.stderr
    path = Path(out.stdout.strip())
    assert path.parent == root / "runs" / trained.run_id / "exports" and path.suffix == ".keras"
    assert list(cwd.iterdir()) == []  # not the current folder

    victim = cwd / "mine.keras"
    victim.write_text("mine")
    refused = cli(
        root, "export", "--run", trained.run_id, "--format", "savedmodel", "--out", str(victim), cwd=cwd
    )
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip() == f"error: {victim} already exists; choose a new name"
    assert victim.read_text() == "mine" and sorted(p.name for p in cwd.iterdir()) == ["mine.keras"]
