"""Out-of-fold class probabilities and embedding outlier scores from k small models trained by our own code.

Each fold's model is the `fast` preset built, compiled and fed exactly as `core.training.trainer` does for a run
(`trainer.resolve` fills the settings, `build_for_config`, `architectures.compile_model`,
`datasets.make_tf_dataset`), trained on the other folds for a budget of epochs sized to the data, then asked for
the held-out fold's probabilities and penultimate-layer embeddings in one pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from core.analysis.audit import outliers
from core.analysis.audit.pool import Pool
from core.errors import UserError

AUDIT_PRESET = "fast"
# about this many training images seen per fold: 6 epochs of a 7,000-image set, 2 (the least) of 70,000
EPOCH_IMAGES = 30_000
MIN_EPOCHS, MAX_EPOCHS = 2, 30
# a small dataset gets smaller batches (about 20 steps an epoch), so its models take enough steps
MIN_BATCH = 16
SEED = 0


@dataclass
class CrossVal:
    probs: np.ndarray  # (N, k) out-of-fold probabilities
    outlier_scores: np.ndarray  # (N,)
    epochs: int
    folds: int


def epoch_budget(n_train: int) -> int:
    return int(np.clip(round(EPOCH_IMAGES / max(1, n_train)), MIN_EPOCHS, MAX_EPOCHS))


def batch_size(n_train: int, preset_batch: int) -> int:
    return int(min(preset_batch, max(MIN_BATCH, n_train // 20)))


def fold_indices(y: np.ndarray, folds: int, seed: int) -> list[np.ndarray]:
    """Held-out indices per fold, stratified by class (each class spread over the folds)."""
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(y)
    if counts[counts > 0].min() < folds:
        raise UserError(f"every class needs at least {folds} images for {folds}-fold cross-validation")
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [held for _, held in skf.split(np.zeros(len(y)), y)]


def _two_outputs(model):
    """One sub-model returning (embedding, head output): a single pass gives both."""
    import keras

    from core.analysis.evaluation import embedding_tensor

    _, emb = embedding_tensor(model)
    return keras.Model(model.inputs[0], [emb, model.outputs[0]])


def _outputs(sub, x: np.ndarray, batch: int = 512) -> tuple[np.ndarray, np.ndarray]:
    import keras

    embs, outs = [], []
    for s in range(0, len(x), batch):
        e, o = sub(np.asarray(x[s : s + batch], np.float32), training=False)
        embs.append(np.asarray(keras.ops.convert_to_numpy(e)).reshape(min(batch, len(x) - s), -1))
        outs.append(np.asarray(keras.ops.convert_to_numpy(o)))
    return np.concatenate(embs).astype(np.float32), np.concatenate(outs)


def _batch_progress(progress: Callable[[str, float], None] | None, fold: int, folds: int, steps: int):
    """A Keras callback reporting this fold's training as a share of the whole cross-validation."""
    import keras

    class BatchProgress(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.done = 0

        def on_train_batch_end(self, batch, logs=None) -> None:
            self.done += 1
            if progress is not None and self.done % 20 == 0:
                progress(f"cross-validation: training model {fold + 1} of {folds}",
                         (fold + 0.9 * min(1.0, self.done / steps)) / folds)  # fmt: skip

    return BatchProgress()


def run(pool: Pool, dataset: str, folds: int, *, epochs: int | None = None, seed: int = SEED,
        progress: Callable[[str, float], None] | None = None) -> CrossVal:  # fmt: skip
    """k-fold out-of-fold probabilities and outlier scores for every image of the pool."""
    from core.analysis.probabilities import to_probabilities
    from core.data import datasets
    from core.models import architectures
    from core.training import trainer

    held_out = fold_indices(pool.y, folds, seed)
    n, k = len(pool), len(pool.class_names)
    h, w, c = pool.x.shape[1:]
    n_train = n - n // folds
    budget = epochs or epoch_budget(n_train)
    batch = batch_size(n_train, architectures.get_preset(AUDIT_PRESET).batch_size)
    cfg = trainer.resolve(trainer.TrainRequest(dataset=dataset, preset=AUDIT_PRESET, epochs=budget, seed=seed,
                                               batch_size=batch, image_size=(h, w), channels=c))  # fmt: skip
    import keras

    probs = np.zeros((n, k), np.float64)
    scores = np.full(n, np.nan)
    for f, held in enumerate(held_out):
        if progress is not None:
            progress(f"cross-validation: training model {f + 1} of {folds}", f / folds)
        train_idx = np.setdiff1d(np.arange(n), held, assume_unique=True)
        keras.utils.set_random_seed(seed + f)
        model = trainer.build_for_config(cfg)
        architectures.compile_model(model, cfg.output_kind, cfg.label_mode, cfg.optimizer, cfg.learning_rate)
        train = datasets.SplitData(pool.x[train_idx], pool.y[train_idx])
        ds = datasets.make_tf_dataset(train, cfg.batch_size, shuffle=True, seed=seed + f, num_classes=k,
                                      label_mode=cfg.label_mode)  # fmt: skip
        steps = budget * -(-len(train_idx) // cfg.batch_size)
        # all epochs as one pass over a repeated dataset: a small dataset's epochs would cost more in Keras'
        # per-epoch overhead than in training (measured 3x on 150 images)
        ds = ds.repeat(budget)

        model.fit(ds, epochs=1, verbose=0, callbacks=[_batch_progress(progress, f, folds, steps)])
        if progress is not None:
            progress(f"cross-validation: scoring fold {f + 1} of {folds}", (f + 0.9) / folds)
        emb, out = _outputs(_two_outputs(model), pool.x)
        probs[held] = to_probabilities(out[held], cfg.output_kind)
        scores[held] = outliers.fold_scores(emb[train_idx], pool.y[train_idx], emb[held], k)
        keras.backend.clear_session()
    if progress is not None:
        progress("cross-validation done", 1.0)
    return CrossVal(probs, scores, budget, folds)
