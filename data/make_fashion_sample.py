"""Build data/fashion-mnist-sample/ from the real Fashion-MNIST (Debian package `dataset-fashion-mnist`).

Usage: python data/make_fashion_sample.py [--source /usr/share/datasets/fashion-mnist] [--train 600] [--test 100]
Picks a balanced, seeded subset and writes one 28x28 grayscale PNG per image into train/<class>/ and test/<class>/.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

CLASS_NAMES = [
    "T-shirt_top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle_boot",
]  # fmt: skip
DEFAULT_SOURCE = Path("/usr/share/datasets/fashion-mnist")


def read_idx(path: Path) -> np.ndarray:
    """Read a (gzipped) IDX file: magic, dims, then unsigned bytes."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def pick(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    idx = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in range(len(CLASS_NAMES))]
    return np.sort(np.concatenate(idx))


def write_split(out: Path, images: np.ndarray, labels: np.ndarray, chosen: np.ndarray) -> None:
    for c in CLASS_NAMES:
        (out / c).mkdir(parents=True, exist_ok=True)
    for i in chosen:
        Image.fromarray(images[i], mode="L").save(
            out / CLASS_NAMES[labels[i]] / f"{i:05d}.png", optimize=True
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "fashion-mnist-sample")
    ap.add_argument("--train", type=int, default=600)
    ap.add_argument("--test", type=int, default=100)
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args(argv)
    try:
        splits = {
            "train": (
                read_idx(args.source / "train-images-idx3-ubyte.gz"),
                read_idx(args.source / "train-labels-idx1-ubyte.gz"),
            ),
            "test": (
                read_idx(args.source / "t10k-images-idx3-ubyte.gz"),
                read_idx(args.source / "t10k-labels-idx1-ubyte.gz"),
            ),
        }
    except OSError as exc:
        print(
            f"error: cannot read Fashion-MNIST ({exc}); apt-get install dataset-fashion-mnist",
            file=sys.stderr,
        )
        return 2
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(dir=args.out.parent) as tmp:
        for split, (images, labels) in splits.items():
            write_split(Path(tmp) / split, images, labels, pick(labels, getattr(args, split), rng))
        shutil.copy(Path(__file__).parent / "fashion-mnist-sample.README.md", Path(tmp) / "README.md")
        if args.out.exists():
            shutil.rmtree(args.out)
        shutil.move(tmp, args.out)
        Path(tmp).mkdir()  # let TemporaryDirectory clean up an empty dir
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
