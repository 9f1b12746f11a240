"""Exact and near duplicates, within and across classes and splits, without comparing images one pair at a time.

Exact: a hash (BLAKE2b) of the decoded pixels, so a PNG re-saved as another PNG, or renamed, is the same image.
Near: the 64-bit DCT perceptual hash of `imagehash.phash` (resizing and JPEG re-encoding move only a few bits),
computed for all images at once, then every pair within NEAR_BITS bits, found with vectorised XOR + popcount over blocks of rows (70,000
images: ~2.5e9 pairs in ~20 s on one core). A pair is kept only when the decoded pixels also agree: their 7x7
thumbnails differ nowhere by more than NEAR_PIXEL_MAX. Small, plain images such as Fashion-MNIST's sneakers share
hash bits without being the same picture; a re-encoded copy keeps every region's brightness.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

from core.analysis.audit.pool import Pool
from core.analysis.audit.report import DuplicateGroup, Leak

NEAR_BITS = 6  # perceptual-hash bits (of 64) two near duplicates may differ in
NEAR_PIXEL_MAX = 0.075  # and their 7x7 thumbnails (block means) may differ by at most this (of 0..1) anywhere
# Measured on the embedded sample with 300 planted copies (upscaled 1-3x, JPEG quality 70-90, read back through
# our decode): all were within 6 bits and 0.075, while 8 of the sample's 75,748 pairs within 10 bits also were
# (Fashion-MNIST's sneakers look alike: a per-image mean difference let 983 through, a phash within 6 bits alone 8,696).
THUMB = 7  # thumbnail side for the pixel check
BLOCK_ROWS = 512  # rows of the pairwise XOR done at once (512 x 70,000 x 8 bytes = 290 MB at the most)
MAX_CANDIDATES = 5_000_000  # hash-close pairs checked on pixels at most; a degenerate dataset stops here


def content_hashes(x: np.ndarray) -> list[bytes]:
    return [hashlib.blake2b(np.ascontiguousarray(a).tobytes(), digest_size=16).digest() for a in x]


PHASH_SIDE, PHASH_BITS_SIDE = 32, 8  # imagehash.phash's defaults: a 32x32 DCT, its 8x8 lowest frequencies


def _resize_matrix(n: int, size: int = PHASH_SIDE) -> np.ndarray:
    """(size, n): PIL's Lanczos resize of a length-n signal to `size`, as a matrix (resizing is linear)."""
    from PIL import Image

    out = np.zeros((size, n), np.float64)
    for i in range(n):
        e = np.zeros((n, 1), np.float32)
        e[i] = 1.0
        out[:, i] = np.asarray(Image.fromarray(e, "F").resize((1, size), Image.Resampling.LANCZOS))[:, 0]
    return out


def _dct_matrix(size: int = PHASH_SIDE, keep: int = PHASH_BITS_SIDE) -> np.ndarray:
    """The first `keep` rows of the unnormalised DCT-II (scipy.fftpack.dct's default, which imagehash uses)."""
    k = np.arange(keep)[:, None]
    n = np.arange(size)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * n + 1) / (2 * size))


def perceptual_hashes(x: np.ndarray) -> np.ndarray:
    """uint64 perceptual hash of each image: `imagehash.phash`'s algorithm (grayscale, Lanczos to 32x32, 2-D DCT,
    the 8x8 lowest frequencies above their median) done for all images at once. Resize and DCT are both linear, so
    they fold into two small matrices and one einsum: 70,000 images in about a second, where calling imagehash
    per image took 2.4 ms each on this loaded machine. It differs from imagehash only where imagehash rounds the
    resized image to 8 bits, which can move a frequency across the median (measured: 0-4 bits, mostly 0)."""
    n, h, w, c = x.shape
    a = _dct_matrix() @ _resize_matrix(h)  # (8, h)
    b = _dct_matrix() @ _resize_matrix(w)  # (8, w)
    out = np.zeros(n, np.uint64)
    for s in range(0, n, 8192):
        chunk = x[s : s + 8192].astype(np.float64)
        gray = chunk[..., 0] if c == 1 else chunk[..., :3] @ np.array([0.299, 0.587, 0.114])
        low = np.einsum("kh,nhw,lw->nkl", a, gray, b, optimize=True).reshape(len(chunk), -1)
        bits = low > np.median(low, axis=1, keepdims=True)
        out[s : s + 8192] = np.packbits(bits, axis=1).view(">u8").reshape(-1)
    return out


def close_pairs(h: np.ndarray, max_bits: int, progress: Callable[[float], None] | None = None) -> np.ndarray:
    """(i, j, bits) for every i < j whose hashes differ in at most `max_bits` bits, as an int64 (M, 3) array."""
    n = len(h)
    found: list[np.ndarray] = []
    total = 0
    for start in range(0, n, BLOCK_ROWS):
        stop = min(n, start + BLOCK_ROWS)
        rest = h[start:]  # only j >= start: each pair once
        d = np.bitwise_count(h[start:stop, None] ^ rest[None, :])
        ii, jj = np.nonzero(d <= max_bits)
        jj = jj + start
        ii = ii + start
        keep = jj > ii
        ii, jj = ii[keep], jj[keep]
        if len(ii):
            found.append(np.stack([ii, jj, d[ii - start, jj - start].astype(np.int64)], axis=1))
            total += len(ii)
        if progress is not None:
            progress(stop / n)
        if total > MAX_CANDIDATES:
            break
    return np.concatenate(found) if found else np.zeros((0, 3), np.int64)


def thumbnails(x: np.ndarray) -> np.ndarray:
    """Block means on a THUMB x THUMB grid (0..1): JPEG noise and resampling blur average out, shapes stay."""
    n, h, w, c = x.shape
    f = max(1, min(h, w) // THUMB)
    gh, gw = h // f, w // f
    t = x[:, : gh * f, : gw * f].astype(np.float32).reshape(n, gh, f, gw, f, c).mean(axis=(2, 4))
    return t.reshape(n, -1) / 255.0


def pixel_gap(x: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Largest difference between the two thumbnails of each pair."""
    out = np.zeros(len(i), np.float32)
    for s in range(0, len(i), 8192):
        out[s : s + 8192] = np.abs(thumbnails(x[i[s : s + 8192]]) - thumbnails(x[j[s : s + 8192]])).max(
            axis=1
        )
    return out


def _components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    g = coo_matrix((np.ones(len(i), np.int8), (i, j)), shape=(n, n))
    return connected_components(g, directed=False)[1]


def find(
    pool: Pool, progress: Callable[[float], None] | None = None
) -> tuple[list[DuplicateGroup], list[Leak]]:
    """Groups of duplicates (exact groups and near groups) and, per held-out image, its closest twin in train."""
    n = len(pool)
    exact = content_hashes(pool.x)
    ph = perceptual_hashes(pool.x)
    if progress is not None:
        progress(0.4)
    cand = close_pairs(ph, NEAR_BITS, (lambda f: progress(0.4 + 0.5 * f)) if progress else None)
    # exact twins whose hashes differ can't happen, but exact twins are always hash-close: one source of edges
    same = np.array([exact[a] == exact[b] for a, b in cand[:, :2]], bool) if len(cand) else np.zeros(0, bool)
    gap = pixel_gap(pool.x, cand[:, 0], cand[:, 1]) if len(cand) else np.zeros(0, np.float32)
    keep = same | (gap <= NEAR_PIXEL_MAX)
    edges = cand[keep]
    same = same[keep]
    gaps = gap[keep]
    groups: list[DuplicateGroup] = []
    leaks: list[Leak] = []
    if len(edges):
        comp = _components(n, edges[:, 0], edges[:, 1])
        members: dict[int, list[int]] = {}
        for node in np.unique(edges[:, :2]):
            members.setdefault(int(comp[node]), []).append(int(node))
        edge_bits: dict[int, int] = {}
        for (a, _b, bits), _s in zip(edges, same, strict=True):
            c = int(comp[a])
            edge_bits[c] = max(edge_bits.get(c, 0), int(bits))
        for c, idx in members.items():
            all_exact = len({exact[k] for k in idx}) == 1
            labels = [pool.class_names[int(pool.y[k])] for k in idx]
            groups.append(DuplicateGroup(
                kind="exact" if all_exact else "near", paths=[pool.ids[k] for k in idx], labels=labels,
                splits=[str(pool.splits[k]) for k in idx], distance=0.0 if all_exact else float(edge_bits[c]),
                conflict=len(set(labels)) > 1,
            ))  # fmt: skip
        # held-out index -> (0 exact / 1 near, pixel gap, bits, train index): its closest twin in train
        best: dict[int, tuple[int, float, int, int]] = {}
        for (a, b, bits), s, g in zip(edges, same, gaps, strict=True):
            sa, sb = pool.splits[a], pool.splits[b]
            if (sa == "train") == (sb == "train"):
                continue
            held, tr = (int(b), int(a)) if sa == "train" else (int(a), int(b))
            rank = (0, 0.0, 0, tr) if s else (1, float(g), int(bits), tr)
            if held not in best or rank < best[held]:
                best[held] = rank
        for held, (near, _g, bits, tr) in sorted(best.items(), key=lambda kv: (kv[1][:2], kv[0])):
            leaks.append(Leak(pool.ids[held], pool.ids[tr], "near" if near else "exact", float(bits)))
    groups.sort(key=lambda g: (g.kind != "exact", not g.conflict, g.distance, g.paths[0]))
    if progress is not None:
        progress(1.0)
    return groups, leaks
