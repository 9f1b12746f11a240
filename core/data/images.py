"""Decode images a person drops in (uploads, dataset files) without trusting them, and turn them into model input.

Training, prediction, inspection and export all go through `to_model_input`, so a model never sees pixels prepared
one way at training time and another way at prediction time.
"""

from __future__ import annotations

import base64
import io
import math
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from core.errors import UserError
from core.validation import read_regular_file

# Pillow format ids we agree to parse; everything else (SVG, PSD, EPS, ICO, PDF, ...) is refused before a plugin
# gets to look at the bytes. MPO (a JPEG with extra pictures, from phone depth/3D shots) has no opener of its own:
# Pillow's JPEG opener hands it over, so it is read as a JPEG.
# TIFFs Pillow cannot open (float or wide multi-channel ones, as tifffile writes them) are read with tifffile; iPhone
# HEIC/HEIF photos through pillow-heif, whose Pillow opener is registered on the first HEIF file we see.
ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")
_DECODED_AS: frozenset[str] = frozenset({*ALLOWED_FORMATS, "MPO", "HEIF"})

ALLOWED_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".mpo", ".gif", ".bmp", ".dib", ".webp", ".tif", ".tiff", ".heic",
     ".heif"}
)  # fmt: skip
MAX_FILE_BYTES = 256 << 20  # an 80-megapixel uncompressed RGB TIFF is 240 MB
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1", b"heif"}
)
_heif_opener: list[bool] = []  # [registered?] once tried

_WHITE = 255.0


def _with_name(msg: str, name: str | None) -> str:
    return f"{msg}: {name}" if name else msg


def _megapixels(n: int) -> str:
    return f"{round(n / 1e6, 1):g} megapixels"


def _bomb_message(exc: Exception, max_pixels: int) -> str:
    """Pillow refuses before we can read the size, but its message carries the pixel count."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    limit = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)
    if found:
        return f"image too large: {_megapixels(int(found.group(1)))} (limit {_megapixels(limit)})"
    return "image too large: it would decompress to far too many pixels"


def is_heif(data: bytes) -> bool:
    """An ISO-BMFF file whose major brand is HEIF/HEIC (what iPhones write)."""
    return len(data) >= 12 and data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS


def _register_heif() -> bool:
    """pillow-heif's Pillow opener, registered once and only when a HEIF file arrives (it loads libheif)."""
    if not _heif_opener:
        try:
            import pillow_heif

            pillow_heif.register_heif_opener()
            _heif_opener.append(True)
        except Exception:  # missing or broken wheel: HEIF files are then refused like any unknown format
            _heif_opener.append(False)
    return _heif_opener[0]


def _check_size(width: int, height: int, max_side: int, max_pixels: int, name: str | None) -> None:
    if width <= 0 or height <= 0:
        raise UserError(_with_name("file is truncated or corrupt", name))
    if width > max_side or height > max_side:
        raise UserError(_with_name(f"image too large: {width}×{height} (limit {max_side} px a side)", name))
    if width * height > max_pixels:
        raise UserError(
            _with_name(f"image too large: {width}×{height} (limit {_megapixels(max_pixels)})", name)
        )


def _wide_to_uint8(arr: np.ndarray) -> np.ndarray:
    """16-bit drops its low byte (as Pillow does for 16-bit RGB TIFFs); floats in 0..1 are scaled by 255, other
    floats and signed integers are stretched min..max; a constant picture becomes black."""
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind == "u":
        return (arr >> (8 * arr.dtype.itemsize - 8)).astype(np.uint8)
    a = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if arr.dtype.kind == "f" and lo >= 0.0 and hi <= 1.0:
        out = a * 255.0
    elif hi > lo:
        out = (a - lo) * (255.0 / (hi - lo))
    else:
        out = np.zeros_like(a)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _load_tiff(data: bytes, max_side: int, max_pixels: int, name: str | None) -> Image.Image:
    """A TIFF Pillow cannot read, through tifffile: first page only, size checked from its tags before decoding."""
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = tif.pages.first
            axes, shape = page.axes, tuple(int(d) for d in page.shape)
            if "Y" not in axes or "X" not in axes:
                raise UserError(_with_name("unsupported TIFF layout", name))
            height, width = shape[axes.index("Y")], shape[axes.index("X")]
            _check_size(width, height, max_side, max_pixels, name)
            if math.prod(shape) > 4 * max_pixels:
                raise UserError(_with_name("image too large: too many samples per pixel", name))
            arr = np.asarray(page.asarray())
    except UserError:
        raise
    except MemoryError:
        raise UserError(_with_name("image too large to decode", name)) from None
    except Exception:  # bad tags, truncated strips, compression without a codec
        raise UserError(_with_name("file is truncated or corrupt", name)) from None
    order = [axes.index(a) for a in "YXS" if a in axes]
    rest = [i for i in range(arr.ndim) if i not in order]
    arr = np.transpose(arr, order + rest).reshape(arr.shape[order[0]], arr.shape[order[1]], -1)
    if arr.shape[2] > 4:
        arr = arr[..., :3]  # extra samples beyond RGBA (e.g. multispectral): keep the first three
    arr = _wide_to_uint8(arr)
    return Image.fromarray(np.ascontiguousarray(arr[..., 0] if arr.shape[2] == 1 else arr))


def load_image(
    source: bytes | Path | str,
    *,
    max_side: int = 12000,
    max_pixels: int = 80_000_000,
    max_bytes: int = MAX_FILE_BYTES,
    name: str | None = None,
) -> Image.Image:
    """Decode untrusted bytes or a file into a fully loaded, upright, single-frame image.

    The size is checked from the header before any pixel is decoded, so a tiny file that claims to be a
    40000×40000 picture is refused without allocating gigabytes. A path is stat-ed before it is opened, so a
    fifo, a device or a huge file is refused instead of read. The result no longer references the file.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        name = name or path.name
        data = read_regular_file(path, max_bytes, "file", name)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        raise TypeError(f"load_image expects bytes or a path, got {type(source).__name__}")

    if not data:
        raise UserError(_with_name("empty file", name))
    if len(data) > max_bytes:
        raise UserError(_with_name(f"file too large (limit {max_bytes >> 20} MiB)", name))
    formats = list(ALLOWED_FORMATS)
    if is_heif(data) and _register_heif():
        formats.append("HEIF")
    tiff = data[:4] in _TIFF_MAGIC

    with warnings.catch_warnings():
        # Pillow's own bomb guard only warns below 2x MAX_IMAGE_PIXELS; for untrusted input a warning is a refusal.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=formats)
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise UserError(_with_name(_bomb_message(exc, max_pixels), name)) from None
        except Image.UnidentifiedImageError:
            if tiff:
                return _load_tiff(data, max_side, max_pixels, name)
            raise UserError(_with_name("not an image (or a format we don't read)", name)) from None
        except Exception:  # a plugin choking on a malformed header
            if tiff:
                return _load_tiff(data, max_side, max_pixels, name)
            raise UserError(_with_name("file is truncated or corrupt", name)) from None

        try:
            if img.format not in _DECODED_AS:
                raise UserError(_with_name("not an image (or a format we don't read)", name))
            width, height = img.size
            _check_size(width, height, max_side, max_pixels, name)
            try:
                img.seek(0)  # first frame of an animation / first page of a multipage TIFF
                img.load()
            except (Image.DecompressionBombWarning, Image.DecompressionBombError):
                raise UserError(
                    _with_name(
                        f"image too large: {width}×{height} (it would decompress to far too much)", name
                    )
                ) from None
            except (MemoryError, RecursionError):
                raise UserError(_with_name("image too large to decode", name)) from None
            except Exception:  # OSError "image file is truncated", zlib/struct/Syntax errors from bad data
                if tiff:  # a TIFF layout Pillow opens but cannot decode
                    return _load_tiff(data, max_side, max_pixels, name)
                raise UserError(_with_name("file is truncated or corrupt", name)) from None
            try:
                upright = ImageOps.exif_transpose(img)
            except Exception:  # malformed EXIF must not cost a person their image; keep it as stored
                upright = img.copy()
        finally:
            img.close()
    upright.info.pop("exif", None)
    return upright


def _rescale_wide(arr: np.ndarray, is_float: bool) -> np.ndarray:
    """Map 16/32-bit or float pixels onto 0..255 using the range the image actually uses, never clipping.

    Integer data that already fits a byte is kept as is (an 8-bit picture stored in a wide container);
    floats in 0..1 are the usual "normalised image" convention and are multiplied by 255; anything wider is
    divided by its own maximum (shifted first when negative values occur), so a 16-bit picture keeps its contrast.
    """
    arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if arr.size == 0:
        return arr.astype(np.uint8)
    lo = min(0.0, float(arr.min()))
    hi = float(arr.max())
    if lo >= 0.0 and is_float and hi <= 1.0:
        out = arr * 255.0
    elif lo >= 0.0 and hi <= 255.0:
        out = arr
    else:
        out = (arr - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _composite_over_white(img: Image.Image) -> Image.Image:
    """Flatten transparency the way a viewer shows it on a white page; returns L or RGB."""
    gray = img.mode in ("LA", "La")
    rgba = img.convert("LA" if gray else "RGBA")
    arr = np.asarray(rgba, dtype=np.float64)
    colour, alpha = arr[..., :-1], arr[..., -1:] / 255.0
    out = colour * alpha + _WHITE * (1.0 - alpha)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return Image.fromarray(out[..., 0] if gray else out, mode="L" if gray else "RGB")


def flatten(img: Image.Image) -> Image.Image:
    """Reduce any Pillow mode to 8-bit "L" or "RGB" with transparency composited over white.

    Grayscale-like sources stay "L", colour sources become "RGB". The importer stores this form, so a dataset
    file and the original it came from give the same `to_mode` result for either channel count.
    """
    mode = img.mode
    if mode in ("L", "RGB"):
        if "transparency" in img.info:
            return _composite_over_white(img.convert("LA" if mode == "L" else "RGBA"))
        return img
    if mode == "1":
        return img.convert("L")
    if mode in ("LA", "La"):
        return _composite_over_white(img)
    if mode in ("RGBA", "RGBa", "PA"):
        return _composite_over_white(img.convert("RGBA"))
    if mode == "P":
        if "transparency" in img.info or (img.palette is not None and img.palette.mode == "RGBA"):
            return _composite_over_white(img.convert("RGBA"))
        return img.convert("RGB")
    if mode in ("CMYK", "YCbCr", "RGBX", "HSV"):
        return img.convert("RGB")
    if mode == "F":
        return Image.fromarray(_rescale_wide(np.asarray(img), is_float=True), mode="L")
    if mode == "I" or mode.startswith("I;"):
        return Image.fromarray(_rescale_wide(np.asarray(img), is_float=False), mode="L")
    try:
        return img.convert("RGB")
    except (ValueError, OSError):
        raise UserError(f"unsupported colour mode: {mode}") from None


def to_mode(img: Image.Image, channels: int) -> Image.Image:
    """Normalise any mode to "L" (channels=1) or "RGB" (channels=3), as the model's input layer expects."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    flat = flatten(img)
    target = "L" if channels == 1 else "RGB"
    return flat if flat.mode == target else flat.convert(target)


def _resize(img: Image.Image, image_size: tuple[int, int]) -> Image.Image:
    height, width = int(image_size[0]), int(image_size[1])
    if height <= 0 or width <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    if img.size == (width, height):
        return img
    return img.resize((width, height), Image.Resampling.BILINEAR)


def to_model_input(img: Image.Image, image_size: tuple[int, int], channels: int) -> np.ndarray:
    """The one place pixels become model input: float32 (H, W, C) in 0..255, bilinear-resized to image_size."""
    resized = _resize(to_mode(img, channels), image_size)
    arr = np.asarray(resized, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[..., np.newaxis]
    return arr


def to_uint8_input(img: Image.Image, image_size: tuple[int, int], channels: int) -> np.ndarray:
    """to_model_input rounded to uint8: how decoded datasets are stored, so training sees exactly these pixels."""
    return np.clip(np.rint(to_model_input(img, image_size, channels)), 0, 255).astype(np.uint8)


def prepare(
    source: bytes | Path | str,
    image_size: tuple[int, int],
    channels: int,
    name: str | None = None,
) -> tuple[np.ndarray, Image.Image]:
    """Decode, normalise and resize in one go; also return the picture exactly as the model sees it."""
    img = to_mode(load_image(source, name=name), channels)
    shown = _resize(img, image_size)
    return to_model_input(shown, image_size, channels), shown


def upscale(a: np.ndarray, factor: int, axis: int = 0) -> np.ndarray:
    """Nearest-neighbour enlargement by a whole factor of axes `axis` and `axis + 1` (height, width): a 28×28
    input or a 7×7 feature map stays crisp on screen instead of being blurred by the browser."""
    f = max(1, int(factor))
    return a if f == 1 else a.repeat(f, axis=axis).repeat(f, axis=axis + 1)


def upscale_to(a: np.ndarray, side: int) -> np.ndarray:
    """`upscale` by the largest whole factor that keeps the longer side within about `side` pixels."""
    return upscale(a, side // max(1, max(a.shape[:2])))


def png_bytes(a: np.ndarray) -> bytes:
    """A uint8 picture (H, W) or (H, W, 1|3|4) encoded as PNG."""
    a = np.ascontiguousarray(a, dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a[..., 0] if a.ndim == 3 and a.shape[-1] == 1 else a).save(buf, format="PNG")
    return buf.getvalue()


def png_data_uri(a: np.ndarray) -> str:
    """`png_bytes` as a `data:` URI: it travels inside the element that shows it, so the browser draws it without a
    request of its own to the server."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(a)).decode("ascii")
