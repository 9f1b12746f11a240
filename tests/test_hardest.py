"""Hardest examples and confusions on a real tiny run: planted mislabels lead the losses, twins are neighbours."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from core.analysis import evaluation_runs, hardest
from tests.helpers import app_dirs, make_dataset, train_tiny_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A split dataset whose test split files three squares under circle, and holds a twin of a training image."""
    root = tmp_path_factory.mktemp("hardest")
    with app_dirs(root):
        name = make_dataset("shapes", split=True, per_class=16)
        test = root / "data" / name / "test"
        for i, f in enumerate(sorted((test / "square").iterdir())[:3]):
            Image.open(f).save(test / "circle" / f"mislabelled_{i}.png")
        shutil.copy(
            root / "data" / name / "train" / "stripes" / "stripes_004.png", test / "stripes" / "twin.png"
        )
        run = train_tiny_run(name, epochs=4)
        result = evaluation_runs.evaluate_run(run.run_id)
        yield root, run, result


def test_planted_mislabels_have_the_highest_loss_of_their_class(trained):
    _, _, result = trained
    loss = hardest.losses(result)
    assert loss.shape == (result.num_samples,) and np.all(loss >= 0)
    circle = result.class_names.index("circle")
    top = hardest.hardest(result, per_class=3)
    names = {result.paths[i].rsplit("/", 1)[-1] for i in top[circle]}
    assert names == {f"mislabelled_{i}.png" for i in range(3)}, names
    assert all(len(v) <= 3 for v in top.values())
    assert list(loss[top[circle]]) == sorted(loss[top[circle]], reverse=True)


def test_most_confused_names_the_planted_pair_first(trained):
    _, _, result = trained
    pairs = hardest.most_confused(result)
    assert pairs and (pairs[0].true, pairs[0].predicted) == ("circle", "square") and pairs[0].count >= 3
    assert all(p.true != p.predicted for p in pairs)
    assert [p.count for p in pairs] == sorted((p.count for p in pairs), reverse=True)
    idx = hardest.confused_indices(result, pairs[0])
    assert len(idx) == pairs[0].count and all(result.labels[i] != result.predictions[i] for i in idx)


def test_evidence_finds_the_twin_in_training_and_a_grad_cam(trained, monkeypatch):
    root, run, result = trained
    monkeypatch.setenv("CONVNET_DATA_DIR", str(root / "data"))
    monkeypatch.setenv("CONVNET_RUNS_DIR", str(root / "runs"))
    from core.models import loading

    lm = loading.load_run_model(run)
    twin = next(i for i, p in enumerate(result.paths) if p.endswith("twin.png"))
    wrong = int(np.flatnonzero(result.labels != result.predictions)[0])
    ev = hardest.explain(run, lm, result, np.array([twin, wrong]), k=3)
    assert [e.index for e in ev] == [twin, wrong]
    first = ev[0].neighbours[0]
    assert first.path.endswith("train/stripes/stripes_004.png") and first.similarity > 0.999
    assert all(len(e.neighbours) == 3 and len(e.neighbour_images) == 3 for e in ev)
    sims = [n.similarity for n in ev[1].neighbours]
    assert sims == sorted(sims, reverse=True)
    assert ev[0].image.shape == tuple(run.input_shape)
    assert ev[1].cam is None or ev[1].cam.shape[:2] == ev[1].image.shape[:2]
    # the training embeddings are kept in the run folder and reused while model and files are unchanged
    stored = run.path / hardest.FOLDER / hardest.EMBED_FILE
    assert stored.is_file()
    before = stored.stat().st_mtime_ns
    hardest.train_index(run, lm.model)
    assert stored.stat().st_mtime_ns == before


def test_nearest_matches_a_full_sort():
    rng = np.random.default_rng(1)
    train = rng.normal(size=(300, 16)).astype(np.float32)
    train /= np.linalg.norm(train, axis=1, keepdims=True)
    index = hardest.TrainIndex(train, np.arange(300) % 3, [f"{i}.png" for i in range(300)])
    queries = train[[5, 17, 250]] + 0.01
    found = hardest.nearest(index, queries, 4)
    sims = queries @ train.T
    for row, got in zip(sims, found, strict=True):
        want = np.argsort(-row)[:4]
        assert [n.path for n in got] == [f"{i}.png" for i in want]
        assert [n.label for n in got] == [int(i) % 3 for i in want]
    assert found[0][0].path == "5.png"
    assert len(hardest.nearest(index, queries, 1000)[0]) == 300  # k larger than the index: everything, sorted


def test_hardest_on_the_command_line(trained, monkeypatch):
    import json

    from tests.test_cli import assert_one_line_error, cli

    root, run, _ = trained
    monkeypatch.setenv("CONVNET_DATA_DIR", str(root / "data"))
    monkeypatch.setenv("CONVNET_RUNS_DIR", str(root / "runs"))
    out = cli("hardest", "--run", run.run_id, "--per-class", "3", "--json")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["most_confused"][0][:2] == ["circle", "square"]
    assert {r["path"].rsplit("/", 1)[-1] for r in got["hardest"]["circle"]} == {
        f"mislabelled_{i}.png" for i in range(3)
    }
    assert_one_line_error(cli("hardest", "--run", run.run_id, "--per-class", "0"), "--per-class")
