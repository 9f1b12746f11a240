"""config.json as a typed record: the same JSON as before, unknown keys kept, wrong kinds refused."""

from __future__ import annotations

import json

import pytest

from core import options
from core.__main__ import build_parser
from core.training import runs
from core.training.run_config import RunConfig

OLD_CONFIG = {  # as an earlier version wrote it, plus a key this version does not know
    "dataset": "tiny", "dataset_title": "tiny", "preset": "fast", "preset_title": "Fast",
    "class_names": ["a", "b"], "input_shape": [16, 16, 1], "output_kind": "softmax", "label_mode": "int",
    "preprocessing": "float32 raw pixels", "epochs": 2, "batch_size": 8, "optimizer": "adam",
    "learning_rate": 0.002, "seed": 213, "val_split": 0.2, "class_weights": "none", "early_stopping": 0,
    "restore_best": True, "target_accuracy": None, "weights": None, "builder": None, "limit": None,
    "strategy": "default", "run_id": "r1", "sweep_id": "s7",
}  # fmt: skip


def test_an_old_config_reads_typed_and_writes_back_unchanged():
    cfg = RunConfig.from_dict(OLD_CONFIG)
    assert cfg.input_shape == (16, 16, 1) and cfg.num_classes == 2 and cfg.learning_rate == 0.002
    assert cfg.extra == {"sweep_id": "s7"}
    assert cfg.to_dict() == OLD_CONFIG
    assert json.loads(json.dumps(cfg.to_dict())) == OLD_CONFIG


@pytest.mark.parametrize(
    "bad",
    [{"input_shape": [16, 16]}, {"input_shape": "16x16x1"}, {"class_names": "ab"}, {"class_names": [1, 2]}],
)
def test_a_config_of_the_wrong_kind_is_refused(bad):
    with pytest.raises(ValueError):
        RunConfig.from_dict({**OLD_CONFIG, **bad})


def test_a_run_folder_with_a_broken_config_is_not_listed(isolated_dirs):
    good = runs.create_run(OLD_CONFIG | {"run_id": "good"})
    broken = runs.run_path("broken")
    broken.mkdir(parents=True)
    (broken / "config.json").write_text(json.dumps({**OLD_CONFIG, "input_shape": "x"}))
    assert [r.run_id for r in runs.list_runs()] == [good.run_id]
    assert runs.get_run("good").config.extra == {"sweep_id": "s7"}


def test_the_command_line_offers_exactly_the_choices_in_core_options():
    sub = next(a for a in build_parser()._actions if a.dest == "cmd")
    train, export, evaluate = (sub.choices[n] for n in ("train", "export", "evaluate"))
    by_flag = {
        a.option_strings[0]: a for p in (train, export, evaluate) for a in p._actions if a.option_strings
    }
    assert tuple(by_flag["--optimizer"].choices) == options.OPTIMIZERS
    assert tuple(by_flag["--class-weights"].choices) == options.CLASS_WEIGHT_METHODS
    assert tuple(by_flag["--strategy"].choices) == options.STRATEGIES
    assert tuple(by_flag["--format"].choices) == options.EXPORT_FORMATS
    assert tuple(by_flag["--split"].choices) == options.EVALUATION_SPLITS
    assert (
        by_flag["--seed"].default == options.DEFAULT_SEED
        and by_flag["--preset"].default == options.DEFAULT_PRESET
    )
