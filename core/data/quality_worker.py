"""`python -m core.data.quality_worker FOLDER`: the full image check of one dataset folder, in its own process.

The UI asks for it when the quality cache has no report for the folder's current files. Decoding thousands of images
inside the Streamlit server would set 4 threads against the one that answers the browser, for the interpreter lock
(health-check p90 89 ms vs 17 ms while the embedded sample is checked, measured on 2 busy cores), and against
Chromium for the CPU it needs to draw the page. Here the work runs at a lower priority and leaves its report in the
quality cache (`datasets.cached_quality_report`), which the server then reads.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from core.data import datasets

NICENESS = 10  # the browser and the server go first on a 2-core machine


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m core.data.quality_worker FOLDER", file=sys.stderr)
        return 2
    try:
        os.nice(NICENESS)
    except (AttributeError, OSError):  # no nice() on this platform: run at normal priority
        pass
    datasets.cached_quality_report(datasets.scan_folder(Path(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
