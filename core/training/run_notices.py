"""What a model page must tell a person about the run it uses, so what it shows is read as what it did.

Two things mislead silently: a run trained on another dataset than the one picked in the sidebar (the page
quietly uses the run's own dataset), and a run still training (the page uses whichever checkpoint was saved
last, and the numbers move under the person's feet). Pages render these lines; the decisions live here so the
wording is tested without a browser.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from core.training import (
    runs,  # What each page takes from the run's dataset instead of the active one ({run} is the run's dataset).
)

USES = {
    "Classify": "dataset samples and class names come from {run}",
    "Inspect": "dataset samples and class names come from {run}",
    "Evaluate": "metrics use the test images of {run} (its validation split when it has no test split)",
}
# What each page does with a model that is still being trained.
CHECKPOINT_USE = {
    "Classify": "predictions use",
    "Inspect": "maps, kernels and Grad-CAM use",
    "Evaluate": "Re-evaluate scores",
}


@dataclass(frozen=True)
class Notice:
    level: Literal["warning", "info"]
    text: str


def dataset_notice(run: runs.Run, active_dataset: str | None, page: str) -> Notice | None:
    """A warning when the sidebar's dataset is not the one the run was trained on; None when they agree."""
    trained_on = run.config.dataset
    if not trained_on or not active_dataset or trained_on == active_dataset:
        return None
    uses = USES.get(page, "the page uses {run}").format(run=trained_on)
    return Notice(
        "warning",
        f"The active run was trained on {trained_on}; the active dataset is {active_dataset} — {uses}.",
    )


def training_notice(run: runs.Run, page: str) -> Notice | None:
    """An info line while the run is queued or training: which epoch's checkpoint the page is using."""
    if run.state not in runs.ACTIVE_STATES:
        return None
    done = run.status.get("epochs_done")
    total = run.config.epochs
    use = CHECKPOINT_USE.get(page, "this page uses")
    if isinstance(done, int) and done > 0:
        of = f" of {total}" if isinstance(total, int) else ""
        which = f"the checkpoint saved after epoch {done}{of}"
    else:
        which = "its latest saved checkpoint"
    return Notice(
        "info", f"Run {run.run_id} is still training: {use} {which}, and will change as training goes on."
    )


def run_notices(run: runs.Run | None, active_dataset: str | None, page: str) -> list[Notice]:
    """Every notice a page (Classify, Inspect, Evaluate) shows above its results for the active run."""
    if run is None:
        return []
    found = (dataset_notice(run, active_dataset, page), training_notice(run, page))
    return [n for n in found if n is not None]
