"""Compare two trained runs on the very same held-out images: accuracy of each, per-class differences, McNemar's
test on the images where exactly one of them is right, the images where they disagree, and the size and measured
latency of each model.

Both runs must be on the same dataset with the same classes in the same order; the images scored are the
dataset's test split (drawn once, with run A's seed when a limit samples it), or, when there is none, the
validation split, which is only the same for both when they were split alike (seed, validation share, limit).
Each model sees the images decoded at its own input size, so runs trained at different sizes still compare.

McNemar's test (MCNEMAR_RULE): with b = images only A gets right and c = images only B gets right, the exact
two-sided binomial test (b ~ Binomial(b + c, 1/2)) when b + c < EXACT_BELOW, else the chi-square statistic with
continuity correction (|b - c| - 1)^2 / (b + c) on one degree of freedom.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.analysis.prediction import batched_outputs
from core.analysis.probabilities import to_probabilities
from core.data import datasets, renames
from core.errors import UserError
from core.models import loading
from core.training import runs

EXACT_BELOW = 25  # discordant pairs below which the exact binomial test is used (a common textbook threshold)
ALPHA = 0.05
LATENCY_REPEATS = 20  # single-image calls timed per model (after LATENCY_WARMUP), alternating A and B
LATENCY_WARMUP = 3
MAX_GALLERY = 40  # disagreement images kept for display
MCNEMAR_RULE = f"exact binomial when fewer than {EXACT_BELOW} discordant pairs, else chi-square with continuity correction"

Progress = Callable[[float], None]


@dataclass
class McNemar:
    only_a: int  # b: images A classifies correctly and B does not
    only_b: int  # c: images B classifies correctly and A does not
    p_value: float
    method: str  # "exact binomial", "chi-square with continuity correction", or "no discordant pairs"
    statistic: float | None = None  # the chi-square statistic when that test is used


def mcnemar(only_a: int, only_b: int) -> McNemar:
    """McNemar's test from the two discordant counts (see the module docstring for the rule)."""
    b, c = int(only_a), int(only_b)
    if b < 0 or c < 0:
        raise UserError("discordant counts must be zero or more")
    n = b + c
    if n == 0:
        return McNemar(b, c, 1.0, "no discordant pairs")
    if n < EXACT_BELOW:
        from scipy.stats import binomtest

        p = float(binomtest(min(b, c), n, 0.5, alternative="two-sided").pvalue)
        return McNemar(b, c, min(1.0, p), "exact binomial")
    from scipy.stats import chi2

    stat = (abs(b - c) - 1.0) ** 2 / n
    return McNemar(b, c, float(chi2.sf(stat, 1)), "chi-square with continuity correction", float(stat))


@dataclass
class Side:
    """One model's showing on the shared images."""

    run_id: str
    label: str
    preset: str
    input_shape: tuple[int, int, int]
    predictions: np.ndarray
    accuracy: float
    params: int
    file_bytes: int
    latency_ms: float  # median ms for one image (batch of 1, model(x, training=False))


@dataclass
class Comparison:
    dataset: str
    split: str
    class_names: list[str]
    labels: np.ndarray
    a: Side
    b: Side
    test: McNemar
    per_class: list[dict[str, Any]]  # class, support, accuracy_a, accuracy_b, difference (b - a)
    disagree: np.ndarray  # indices where the two predictions differ, A's confident mistakes first
    gallery: list[np.ndarray] = field(default_factory=list)  # images of disagree[:MAX_GALLERY] (A's input)
    paths: list[str] | None = None

    @property
    def num_samples(self) -> int:
        return int(self.labels.shape[0])

    def verdict(self) -> str:
        """One sentence a person can act on."""
        diff = self.b.accuracy - self.a.accuracy
        if self.test.only_a + self.test.only_b == 0:
            return "The two models are right on exactly the same images."
        better = "B" if diff > 0 else "A" if diff < 0 else None
        lead = (
            f"{better} is more accurate by {abs(diff) * 100:.1f} points"
            if better
            else "both are equally accurate"
        )
        if self.test.p_value < ALPHA:
            return f"{lead}; McNemar p = {self.test.p_value:.3g} < {ALPHA}: unlikely to be chance."
        return f"{lead}; McNemar p = {self.test.p_value:.3g} ≥ {ALPHA}: it could be chance on these images."

    def to_dict(self) -> dict[str, Any]:
        def side(s: Side) -> dict[str, Any]:
            return {"run": s.run_id, "label": s.label, "preset": s.preset, "input_shape": list(s.input_shape),
                    "accuracy": s.accuracy, "params": s.params, "file_bytes": s.file_bytes,
                    "latency_ms": s.latency_ms}  # fmt: skip

        t = self.test
        return {
            "dataset": self.dataset, "split": self.split, "num_samples": self.num_samples,
            "class_names": list(self.class_names), "a": side(self.a), "b": side(self.b),
            "mcnemar": {"only_a_correct": t.only_a, "only_b_correct": t.only_b, "p_value": t.p_value,
                        "method": t.method, "statistic": t.statistic},
            "per_class": self.per_class, "disagreements": int(self.disagree.size), "verdict": self.verdict(),
        }  # fmt: skip


# ------------------------------------------------------------------------------------------- the shared images


def check_comparable(run_a: runs.Run, run_b: runs.Run) -> None:
    """Refuse, in one line, two runs whose predictions cannot be scored against the same labels."""
    if run_a.run_id == run_b.run_id:
        raise UserError("pick two different runs to compare")
    for r in (run_a, run_b):
        if not r.has_model:
            raise UserError(f"run {r.run_id} has no saved model yet")
    ca, cb = run_a.config, run_b.config
    if not renames.same_now(ca.dataset, cb.dataset):
        raise UserError(f"the runs were trained on different datasets ({ca.dataset} vs {cb.dataset}); "
                        "compare runs of one dataset")  # fmt: skip
    if list(ca.class_names) != list(cb.class_names):
        raise UserError(f"the runs have different classes ({', '.join(ca.class_names)} vs "
                        f"{', '.join(cb.class_names)}); compare runs trained on the same classes")  # fmt: skip


def _same_validation(run_a: runs.Run, run_b: runs.Run) -> None:
    ca, cb = run_a.config, run_b.config
    if (ca.seed, ca.val_split, ca.limit) != (cb.seed, cb.val_split, cb.limit):
        raise UserError(f"dataset {ca.dataset} has no test split and the runs drew different validation splits "
                        f"(seed/validation share/limit {ca.seed}/{ca.val_split}/{ca.limit} vs "
                        f"{cb.seed}/{cb.val_split}/{cb.limit}), so no images are held out from both")  # fmt: skip


def shared_images(run_a: runs.Run, run_b: runs.Run, split: str | None = None,
                  limit: int | None = None) -> tuple[str, datasets.SplitData, datasets.SplitData]:  # fmt: skip
    """(split, A's images, B's images): the same images in the same order, each at its model's input shape."""
    from core.analysis import evaluation_runs

    if split not in (None, "test", "val"):
        raise UserError(f"split must be test or val, not {split!r}")
    if limit is not None and limit < 1:
        raise UserError(f"limit must be a positive number of images, got {limit}")
    cfg = run_a.config

    def test_split(run: runs.Run) -> datasets.SplitData:
        h, w, c = run.input_shape
        return datasets.load_splits(cfg.dataset, (h, w), c, seed=cfg.seed, splits=("test",),
                                    limit=limit)["test"]  # fmt: skip

    used = "test"
    data_a = test_split(run_a) if split != "val" else None
    if data_a is not None and len(data_a):
        data_b = test_split(run_b)
    elif split == "test":
        raise UserError(
            f"dataset {cfg.dataset} has no test split; compare on the validation split (--split val)"
        )
    else:
        _same_validation(run_a, run_b)
        used = "val"
        data_a, data_b = evaluation_runs.validation_split(run_a), evaluation_runs.validation_split(run_b)
        if limit and limit < len(
            data_a
        ):  # the first `limit` of the runs' own split, as `evaluate` takes them
            data_a, data_b = (datasets.SplitData(d.x[:limit], d.y[:limit], d.paths[:limit] if d.paths else None)
                              for d in (data_a, data_b))  # fmt: skip
    if not np.array_equal(data_a.y, data_b.y) or (data_a.paths or None) != (data_b.paths or None):
        raise UserError("the two runs did not read the same images (a file became unreadable at one size?)")
    return used, data_a, data_b


# ------------------------------------------------------------------------------------------- scoring


def _latency_ms(models: list[Any], images: list[np.ndarray]) -> list[float]:
    """Median single-image time of each model, calls alternated so a busy CPU slows both alike."""
    times: list[list[float]] = [[] for _ in models]
    for i in range(LATENCY_WARMUP + LATENCY_REPEATS):
        for k, (model, x) in enumerate(zip(models, images, strict=True)):
            one = np.asarray(x[i % len(x)][None], dtype=np.float32)
            t0 = time.perf_counter()
            out = model(one, training=False)
            np.asarray(out[0] if isinstance(out, list | tuple) else out)  # wait for the result
            if i >= LATENCY_WARMUP:
                times[k].append((time.perf_counter() - t0) * 1000)
    return [float(statistics.median(t)) for t in times]


def _per_class(labels: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray,
               names: list[str]) -> list[dict[str, Any]]:  # fmt: skip
    rows = []
    for k, name in enumerate(names):
        mask = labels == k
        n = int(mask.sum())
        acc_a = float(np.mean(pred_a[mask] == k)) if n else float("nan")
        acc_b = float(np.mean(pred_b[mask] == k)) if n else float("nan")
        rows.append({"class": name, "support": n, "accuracy_a": acc_a, "accuracy_b": acc_b,
                     "difference": acc_b - acc_a})  # fmt: skip
    return rows


def disagreements(labels: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray,
                  confidence_a: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """Indices where the two predictions differ: first where only B is right, then only A, then neither;
    within each, A's most confident first."""
    idx = np.flatnonzero(pred_a != pred_b)
    right_a, right_b = pred_a[idx] == labels[idx], pred_b[idx] == labels[idx]
    group = np.where(right_b & ~right_a, 0, np.where(right_a & ~right_b, 1, 2))
    conf = -confidence_a[idx] if confidence_a is not None else np.zeros(idx.size)
    return idx[np.lexsort((conf, group))].astype(np.int64)


def compare_runs(run_a_id: str, run_b_id: str, *, split: str | None = None, limit: int | None = None,
                 progress: Progress | None = None) -> Comparison:  # fmt: skip
    """Score both runs' models on the same images and compare them (see the module docstring)."""
    run_a, run_b = runs.get_run(run_a_id), runs.get_run(run_b_id)
    check_comparable(run_a, run_b)
    used, data_a, data_b = shared_images(run_a, run_b, split, limit)
    if not len(data_a):
        raise UserError(f"nothing to compare: the {used} split has no images")
    lm_a, lm_b = loading.load_run_model(run_a), loading.load_run_model(run_b)

    def part(offset: float) -> Progress | None:
        return None if progress is None else (lambda f: progress(offset + 0.45 * f))

    probs = []
    for lm, data, off in ((lm_a, data_a, 0.0), (lm_b, data_b, 0.45)):
        p = to_probabilities(batched_outputs(lm.model, data.x, 256, part(off)), lm.output_kind)
        if p.shape != (len(data), len(run_a.class_names)):
            raise UserError(
                f"run {lm.source} outputs {p.shape[1]} class scores for {len(run_a.class_names)} classes"
            )
        probs.append(p)
    labels = data_a.y.astype(np.int64)
    pred_a, pred_b = probs[0].argmax(1), probs[1].argmax(1)
    latency = _latency_ms([lm_a.model, lm_b.model], [data_a.x, data_b.x])
    if progress is not None:
        progress(1.0)
    right_a, right_b = pred_a == labels, pred_b == labels
    disagree = disagreements(labels, pred_a, pred_b, probs[0].max(1))
    sides = []
    for run, lm, pred, ms in ((run_a, lm_a, pred_a, latency[0]), (run_b, lm_b, pred_b, latency[1])):
        sides.append(Side(run.run_id, run.short_label(), run.config.preset, run.input_shape, pred,
                          float(np.mean(pred == labels)), int(lm.model.count_params()),
                          int(run.model_path.stat().st_size), ms))  # fmt: skip
    return Comparison(
        dataset=run_a.config.dataset, split=used, class_names=run_a.class_names, labels=labels,
        a=sides[0], b=sides[1], test=mcnemar(int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum())),
        per_class=_per_class(labels, pred_a, pred_b, run_a.class_names), disagree=disagree,
        gallery=[np.asarray(data_a.x[i]) for i in disagree[:MAX_GALLERY]], paths=data_a.paths,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------- text


def _size(n: int) -> str:
    from core.validation import human_bytes

    return human_bytes(n)


def format_text(c: Comparison) -> str:
    """Aligned plain text for the terminal."""
    split = {"test": "test", "val": "validation"}[c.split]
    lines = [f"{c.dataset}, {split} split: {c.num_samples} images, the same for both", ""]
    for tag, s in (("A", c.a), ("B", c.b)):
        lines.append(f"{tag}  {s.run_id}  ({s.label})")
        lines.append(f"   accuracy {s.accuracy:.4f}  params {s.params:,}  file {_size(s.file_bytes)}  "
                     f"latency {s.latency_ms:.2f} ms/image  input {'x'.join(map(str, s.input_shape))}")  # fmt: skip
    t = c.test
    stat = f", chi-square {t.statistic:.3f}" if t.statistic is not None else ""
    lines += ["", f"McNemar: only A right on {t.only_a}, only B right on {t.only_b}; p = {t.p_value:.4g} "
                  f"({t.method}{stat})", c.verdict(), ""]  # fmt: skip
    width = max([len("class"), *(len(r["class"]) for r in c.per_class)])
    lines.append(f"{'class'.ljust(width)}  support  acc A   acc B   B - A")
    for r in c.per_class:
        lines.append(f"{r['class'].ljust(width)}  {r['support']:7d}  {r['accuracy_a']:.3f}   {r['accuracy_b']:.3f}  "
                     f"{r['difference']:+.3f}")  # fmt: skip
    lines.append("")
    lines.append(f"{c.disagree.size} images where the two predictions differ")
    return "\n".join(lines)
