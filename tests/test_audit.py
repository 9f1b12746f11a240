"""Dataset audit on tiny real datasets with planted problems: flipped labels, an exact and a resized/re-encoded
duplicate across splits, a natural photo among drawn shapes; plus the CLI, the cache and the background job."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import paths
from core.analysis import audit
from core.analysis.audit import duplicates
from core.errors import UserError
from tests.helpers import app_dirs, in_run_dirs, train_tiny_run, wait_for

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "fashion-mnist-sample"
CLASSES = ("Bag", "Sneaker", "Trouser")
SIZE = 28
FLIPPED = [f"train/Sneaker/flipped_{i}.png" for i in range(3)]  # trousers filed as sneakers


def _first(split: str, c: str, n: int, skip: int = 0) -> list[Path]:
    return sorted((SAMPLE / split / c).iterdir())[skip : skip + n]


def make_planted(root: Path, train_per_class: int = 40, test_per_class: int = 8) -> dict[str, str]:
    """Real Fashion-MNIST images (from the embedded sample) in train/validation/test folders, with planted
    problems; returns what was planted where."""
    for folder, source, n, skip in (("train", "train", train_per_class, 0), ("test", "test", test_per_class, 0),
                                    ("validation", "test", test_per_class, test_per_class)):  # fmt: skip
        for c in CLASSES:
            d = root / folder / c
            d.mkdir(parents=True, exist_ok=True)
            for f in _first(source, c, n, skip):
                shutil.copyfile(f, d / f.name)
    for rel, f in zip(FLIPPED, _first("train", "Trouser", 3, skip=train_per_class), strict=True):
        shutil.copyfile(f, root / rel)
    exact_train = _first("train", "Bag", 1, skip=5)[0].name
    near_train = _first("train", "Sneaker", 1, skip=11)[0].name
    # an exact copy of a training image in test (the same bytes), and one upscaled 2x and saved as JPEG
    shutil.copyfile(root / "train/Bag" / exact_train, root / "test/Bag/copy.png")
    big = Image.open(root / "train/Sneaker" / near_train).resize((56, 56), Image.Resampling.BICUBIC)
    big.save(root / "test/Sneaker/resaved.jpg", quality=90)
    # a natural photo among the clothes
    from skimage import data as skdata

    photo = Image.fromarray(skdata.camera()).resize((SIZE, SIZE), Image.Resampling.LANCZOS)
    photo.save(root / "train/Bag/photo.png")
    return {
        "exact_test": "test/Bag/copy.png", "exact_train": f"train/Bag/{exact_train}",
        "near_test": "test/Sneaker/resaved.jpg", "near_train": f"train/Sneaker/{near_train}",
        "photo": "train/Bag/photo.png",
    }  # fmt: skip


def _shape(rng: np.random.Generator) -> np.ndarray:
    """A 28x28 drawing (two discs at random places and sizes on faint noise)."""
    a = rng.integers(0, 30, (SIZE, SIZE)).astype(np.float32)
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float32)
    for _ in range(2):
        r = rng.uniform(3, 7)
        cy, cx = rng.uniform(r, SIZE - r, 2)
        a[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = rng.uniform(170, 255)
    return np.clip(a, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """One planted dataset, one tiny run on it and one audit with that run, shared by the module."""
    root = tmp_path_factory.mktemp("audit")
    with app_dirs(root):
        planted = make_planted(root / "data" / "planted")
        run = train_tiny_run("planted", epochs=1)
        t0 = time.monotonic()
        report = audit.run_audit("planted", run.run_id, folds=2)
        seconds = time.monotonic() - t0
    return root, planted, run, report, seconds


@pytest.fixture
def in_audited(audited, monkeypatch):
    in_run_dirs(monkeypatch, audited[0])
    return audited


@pytest.mark.slow
def test_flipped_labels_rank_top(audited):
    _, _, _, report, seconds = audited
    top = [r.path for r in report.label_issues[: len(FLIPPED) + 2]]
    assert set(FLIPPED) <= set(top), (top, seconds)
    scores = [r.score for r in report.label_issues]
    assert scores == sorted(scores)
    flipped = [r for r in report.label_issues if r.path in FLIPPED]
    assert all(r.given == "Sneaker" and r.suggested == "Trouser" and r.split == "train" for r in flipped)


@pytest.mark.slow
def test_exact_and_reencoded_duplicates_are_leaks(audited):
    _, planted, run, report, _ = audited
    leaks = {lk.test_path: lk for lk in report.leaks}
    assert leaks[planted["exact_test"]].train_path == planted["exact_train"]
    assert leaks[planted["exact_test"]].kind == "exact"
    assert leaks[planted["near_test"]].train_path == planted["near_train"]
    assert leaks[planted["near_test"]].kind == "near"
    groups = {tuple(sorted(g.paths)): g for g in report.duplicates}
    exact = groups[tuple(sorted([planted["exact_test"], planted["exact_train"]]))]
    assert exact.kind == "exact" and not exact.conflict and sorted(exact.splits) == ["test", "train"]
    # the planted twins first (exact before near), and no flood of look-alikes
    assert [lk.test_path for lk in report.leaks[:2]] == [planted["exact_test"], planted["near_test"]]
    assert len(report.leaks) <= 4, report.leaks
    # the run's own test accuracy, and again without the two leaked test images
    assert report.meta["accuracy_source"].startswith(f"run {run.run_id}")
    assert report.test_accuracy is not None and report.leak_adjusted_accuracy is not None


@pytest.mark.slow
def test_natural_photo_is_an_outlier(audited):
    _, planted, _, report, _ = audited
    paths_ = [o.path for o in report.outliers]
    assert paths_ and paths_[0] == planted["photo"], report.outliers
    assert len(paths_) <= 3


@pytest.mark.slow
def test_leak_adjusted_accuracy_leaves_out_leaked_images(in_audited):
    """Recomputed by hand from the run's saved evaluation."""
    from core.analysis import evaluation_runs
    from core.training import runs

    _, _, run, report, _ = in_audited
    result = evaluation_runs.cached_result(runs.get_run(run.run_id))
    assert result is not None and result.paths
    leaked = {lk.test_path for lk in report.leaks}
    root = str(paths.data_dir() / "planted") + os.sep
    keep = np.array([p[len(root) :] not in leaked for p in result.paths])
    correct = result.predictions == result.labels
    assert keep.sum() == len(keep) - 2
    assert report.test_accuracy == pytest.approx(correct.mean())
    assert report.leak_adjusted_accuracy == pytest.approx(correct[keep].mean())


@pytest.mark.slow
def test_report_json_round_trip(in_audited):
    report = in_audited[3]
    d = json.loads(json.dumps(report.to_json()))
    assert {"label_issues", "duplicates", "leaks", "outliers"} <= set(d)
    assert audit.AuditReport.from_json(d) == report


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", "audit", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)  # fmt: skip


@pytest.mark.slow
def test_cli_json_from_the_cache(in_audited):
    """A second audit of the same files and run is the stored one: instant, and no TensorFlow needed."""
    _, planted, run, report, _ = in_audited
    t0 = time.monotonic()
    done = _cli("--dataset", "planted", "--run", run.run_id, "--folds", "2", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert {"label_issues", "duplicates", "leaks", "outliers"} <= set(out)
    assert out["leaks"][0]["test_path"] == planted["exact_test"]
    assert [r["path"] for r in out["label_issues"]] == [r.path for r in report.label_issues]
    assert time.monotonic() - t0 < 30
    human = _cli("--dataset", "planted", "--run", run.run_id, "--folds", "2")
    assert human.returncode == 0 and "likely mislabeled:" in human.stdout


@pytest.mark.parametrize(
    "args, says",
    [
        (["--dataset", "nope"], "unknown dataset"),
        (["--dataset", "planted", "--folds", "1"], "folds must be from 2"),
        (["--dataset", "planted", "--run", "no-such-run"], "no-such-run"),
        ([], "needs --dataset"),
    ],
)
@pytest.mark.slow
def test_cli_bad_arguments_one_line_without_tensorflow(in_audited, args, says):
    code = (
        "import sys; from core.__main__ import main; rc = main(sys.argv[1:]); "
        "print('TF' if 'tensorflow' in sys.modules else 'noTF'); sys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", code, "audit", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and says in lines[0], done.stderr
    assert done.stdout.strip() == "noTF"


@pytest.mark.slow
def test_run_of_another_dataset_is_refused(in_audited):
    run = in_audited[2]
    shutil.copytree(paths.data_dir() / "planted", paths.data_dir() / "other")
    with pytest.raises(UserError, match="trained on planted"):
        audit.run_audit("other", run.run_id)


@pytest.mark.slow
def test_cache_hit_and_invalidation(in_audited):
    _, _, run, report, _ = in_audited
    assert audit.cached_audit("planted", run.run_id) == report
    assert audit.cached_audit("planted") is None  # another key: no run
    assert audit.audit_status("planted", run.run_id)["state"] == "done"
    extra = paths.data_dir() / "planted" / "train" / "Bag" / "zz_new.png"
    Image.new("L", (SIZE, SIZE)).save(extra)
    try:
        assert audit.cached_audit("planted", run.run_id) is None
        assert audit.audit_status("planted", run.run_id)["state"] == "none"
    finally:
        extra.unlink()
    assert audit.cached_audit("planted", run.run_id) == report


@pytest.mark.slow
def test_background_job_reports_done(in_audited):
    """The job is a real `python -m core audit` process; here it finds the stored result and finishes."""
    _, _, run, report, _ = in_audited
    d = audit.start_audit_job("planted", run.run_id, folds=2)
    assert (d / "status.json").is_file()
    assert wait_for(lambda: audit.audit_status("planted", run.run_id)["state"] != "running", timeout=120)
    st = audit.audit_status("planted", run.run_id)
    assert st["state"] == "done" and st["fraction"] == 1.0, (st, (d / "job.log").read_text())
    log = (d / "job.log").read_text()  # its progress lines and summary went to the job's log
    assert "done (the stored result" in log and f"likely mislabeled: {len(report.label_issues)}\n" in log


@pytest.mark.slow
def test_background_job_failure_is_one_line(in_audited):
    from core.analysis.audit import jobs

    d = jobs.status_dir("planted", None)
    d.mkdir(parents=True, exist_ok=True)
    # a status file claiming a job that is not running: reported failed, never running forever
    (d / "status.json").write_text(json.dumps({"state": "running", "pid": 999999, "pid_start": 1.0}))
    st = audit.audit_status("planted")
    assert st["state"] == "failed" and "ended unexpectedly" in st["error"]
    with pytest.raises(UserError):
        audit.start_audit_job("nope")


@pytest.mark.slow
def test_status_dir_must_be_ours(in_audited, tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    done = _cli("--dataset", "planted", "--status-dir", str(target))
    assert done.returncode == 2 and "--status-dir must be" in done.stderr
    assert not list(target.iterdir())


def test_close_pairs_matches_brute_force():
    rng = np.random.default_rng(0)
    h = rng.integers(0, 2**63, 700, dtype=np.uint64)
    h[10] = h[500] ^ np.uint64(0b1011)  # 3 bits apart
    got = {(int(i), int(j), int(b)) for i, j, b in duplicates.close_pairs(h, 5)}
    want = {(i, j, int(np.bitwise_count(h[i] ^ h[j]))) for i in range(700) for j in range(i + 1, 700)
            if np.bitwise_count(h[i] ^ h[j]) <= 5}  # fmt: skip
    assert got == want and (10, 500, 3) in got


def test_resaved_jpeg_is_hash_and_pixel_close():
    from core.data.images import load_image, to_uint8_input

    rng = np.random.default_rng(3)
    a = _shape(rng)
    buf = io.BytesIO()
    Image.fromarray(a).resize((56, 56), Image.Resampling.BICUBIC).save(buf, "JPEG", quality=90)
    b = to_uint8_input(load_image(buf.getvalue(), name="x.jpg"), (SIZE, SIZE), 1)
    x = np.stack([a[..., None], b])
    h = duplicates.perceptual_hashes(x)
    assert int(np.bitwise_count(h[0] ^ h[1])) <= duplicates.NEAR_BITS
    assert duplicates.pixel_gap(x, np.array([0]), np.array([1]))[0] <= duplicates.NEAR_PIXEL_MAX
    other = _shape(rng)[..., None]
    assert duplicates.pixel_gap(np.stack([a[..., None], other]), np.array([0]), np.array([1]))[0] > 0.2


@pytest.mark.slow
def test_array_dataset_ids(tmp_path):
    """Built-in arrays (scikit-learn's digits) get ids like train/123; 2 folds of 1 epoch only check the wiring."""
    report = audit.run_audit("digits", folds=2, epochs=1)
    ids = [r.path for r in report.label_issues] + [o.path for o in report.outliers]
    assert ids and all(i.split("/")[0] == "train" and i.split("/")[1].isdigit() for i in ids)
    assert report.test_accuracy is not None  # the cross-validated models on the validation split


def test_batched_phash_matches_imagehash():
    """Our all-at-once phash is imagehash.phash's algorithm: on real images of two sizes it differs from it only
    where imagehash's 8-bit rounding moves a frequency across the median (a few bits, mostly none)."""
    import imagehash

    files = _first("train", "Coat", 20) + _first("train", "Sandal", 20)
    x = np.stack([np.asarray(Image.open(f))[..., None] for f in files])
    big = np.stack([np.asarray(Image.open(f).resize((50, 40)))[..., None] for f in files])
    for arr in (x, big):
        ours = duplicates.perceptual_hashes(arr)
        gaps = []
        for a, h in zip(arr, ours, strict=True):
            ref = imagehash.phash(Image.fromarray(a[..., 0]))
            ref_int = int(np.packbits(ref.hash.reshape(-1)).view(">u8")[0])
            gaps.append(int(np.bitwise_count(np.uint64(ref_int) ^ h)))
        assert max(gaps) <= 4 and np.mean(gaps) <= 1.5 and gaps.count(0) >= len(gaps) // 2, gaps


def test_appearance_scores_sampled_reference_agrees():
    """Above the reference cap the neighbours come from a sample; the far image still stands out."""
    from core.analysis.audit import outliers

    rng = np.random.default_rng(1)
    x = np.stack([_shape(rng)[..., None] for _ in range(300)])
    x[17] = 128  # flat grey: unlike every drawing
    full = outliers.appearance_scores(x)
    old = outliers.APPEARANCE_REFERENCE
    outliers.APPEARANCE_REFERENCE = 120
    try:
        sampled = outliers.appearance_scores(x)
    finally:
        outliers.APPEARANCE_REFERENCE = old
    assert int(np.argmax(full)) == 17 == int(np.argmax(sampled))
    assert np.corrcoef(full, sampled)[0, 1] > 0.8


def test_item_image_for_folder_and_array_ids(tmp_path):
    from core.analysis.audit import pool
    from core.data import datasets

    make_planted(paths.data_dir() / "planted")
    info = datasets.get_dataset("planted")
    a = pool.item_image(info, "train/Bag/photo.png")
    assert a.shape == (SIZE, SIZE) and a.dtype == np.uint8
    with pytest.raises(UserError):
        pool.item_image(info, "../../etc/passwd")
    digits = datasets.get_dataset("digits")
    assert pool.item_image(digits, "train/5").shape == (8, 8)
    with pytest.raises(UserError):
        pool.item_image(digits, "train/99999")


@pytest.mark.slow
def test_flat_folder_ids_and_its_validation_split(tmp_path):
    """A flat folder (no train/test folders): ids are class/file, and the split is the one training would draw."""
    from tests.helpers import make_dataset

    name = make_dataset("flat", per_class=10, size=16)
    # the same picture under two classes: an exact duplicate with conflicting labels
    shutil.copyfile(
        paths.data_dir() / name / "circle" / "circle_000.png", paths.data_dir() / name / "square" / "x.png"
    )
    report = audit.run_audit(name, folds=2, epochs=1)
    conflict = [g for g in report.duplicates if g.conflict]
    assert len(conflict) == 1 and conflict[0].kind == "exact"
    pairs = sorted(zip(conflict[0].paths, conflict[0].labels, strict=True))
    assert pairs == [("circle/circle_000.png", "circle"), ("square/x.png", "square")]
    rows = [(g.paths, g.splits) for g in report.duplicates] + [
        ([r.path], [r.split]) for r in report.label_issues
    ]
    for ids, splits in rows:
        assert all(i.split("/")[0] in ("circle", "square", "stripes") and i.count("/") == 1 for i in ids)
        assert set(splits) <= {"train", "val"}
    assert report.meta["images"] == 31 and "validation" not in report.meta["accuracy_source"]
    assert report.meta["accuracy_source"] == "cross-validated models on the val split"
