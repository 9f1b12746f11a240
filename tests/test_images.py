"""core.data.images: every mode and format a person may drop in, and hostile files refused before decoding."""

from __future__ import annotations

import base64
import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from core.data import images
from core.data.images import ALLOWED_EXTENSIONS, load_image, prepare, to_mode, to_model_input
from core.errors import UserError


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def crafted_png(width: int, height: int, rows: int = 16) -> bytes:
    """A real 1-bit grayscale PNG header claiming width×height, with only a few rows of pixel data (a few KB)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" + bytes((width + 7) // 8)
    idat = zlib.compress(row * rows, 9)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


# ------------------------------------------------------------------ modes


def test_mode_1_becomes_black_and_white_gray():
    img = Image.new("1", (4, 4), 0)
    img.putpixel((1, 1), 1)
    gray = to_mode(img, 1)
    assert gray.mode == "L"
    arr = np.asarray(gray)
    assert arr[1, 1] == 255 and arr[0, 0] == 0
    rgb = to_mode(img, 3)
    assert rgb.mode == "RGB" and tuple(np.asarray(rgb)[1, 1]) == (255, 255, 255)


def test_mode_l_passes_through_and_expands_to_rgb():
    arr = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    img = Image.fromarray(arr)
    assert np.array_equal(np.asarray(to_mode(img, 1)), arr)
    rgb = np.asarray(to_mode(img, 3))
    assert rgb.shape == (8, 8, 3) and np.array_equal(rgb[..., 0], arr) and np.array_equal(rgb[..., 2], arr)


def test_mode_la_composites_over_white():
    img = Image.new("LA", (2, 1))
    img.putpixel((0, 0), (0, 0))  # black, fully transparent -> white
    img.putpixel((1, 0), (0, 255))  # black, opaque -> black
    assert list(np.asarray(to_mode(img, 1))[0]) == [255, 0]


def test_mode_p_uses_palette_colours():
    img = Image.new("P", (2, 1))
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.putpixel((0, 0), 0)
    img.putpixel((1, 0), 1)
    rgb = np.asarray(to_mode(img, 3))
    assert tuple(rgb[0, 0]) == (255, 0, 0) and tuple(rgb[0, 1]) == (0, 0, 255)


def test_mode_p_with_transparency_through_png_composites_over_white():
    img = Image.new("P", (2, 1))
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.putpixel((1, 0), 1)
    loaded = load_image(encode(img, "PNG", transparency=0))
    assert loaded.mode == "P" and "transparency" in loaded.info
    rgb = np.asarray(to_mode(loaded, 3))
    assert tuple(rgb[0, 0]) == (255, 255, 255) and tuple(rgb[0, 1]) == (0, 0, 255)


@pytest.mark.parametrize("mode, key, other", [("L", 50, 0), ("RGB", (1, 2, 3), (9, 9, 9))])
def test_png_trns_colour_key_becomes_white(mode, key, other):
    img = Image.new(mode, (2, 1), key)
    img.putpixel((1, 0), other)
    loaded = load_image(encode(img, "PNG", transparency=key))
    assert loaded.info.get("transparency") == key
    rgb = np.asarray(to_mode(loaded, 3)).tolist()
    assert rgb[0][0] == [255, 255, 255] and rgb[0][1] == ([other] * 3 if mode == "L" else list(other))


def test_mode_pa_composites_over_white():
    img = Image.new("PA", (2, 1))
    img.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    img.putpixel((0, 0), (0, 0))  # black, transparent
    img.putpixel((1, 0), (1, 255))  # green, opaque
    rgb = np.asarray(to_mode(img, 3))
    assert tuple(rgb[0, 0]) == (255, 255, 255) and tuple(rgb[0, 1]) == (0, 255, 0)


def test_mode_rgb_to_gray_uses_luminance():
    img = Image.new("RGB", (1, 1), (255, 0, 0))
    assert np.asarray(to_mode(img, 3))[0, 0].tolist() == [255, 0, 0]
    assert np.asarray(to_mode(img, 1))[0, 0] == 76  # ITU-R 601 luma of pure red


def test_mode_rgba_blends_partial_alpha_with_white():
    img = Image.new("RGBA", (3, 1))
    img.putpixel((0, 0), (0, 0, 0, 0))
    img.putpixel((1, 0), (0, 0, 0, 255))
    img.putpixel((2, 0), (0, 0, 0, 128))
    rgb = np.asarray(to_mode(img, 3))
    assert rgb[0, 0].tolist() == [255, 255, 255]
    assert rgb[0, 1].tolist() == [0, 0, 0]
    assert rgb[0, 2].tolist() == [127, 127, 127]


def test_mode_cmyk_and_ycbcr_become_rgb():
    cmyk = Image.new("CMYK", (2, 2), (0, 255, 255, 0))  # red in ink
    assert np.asarray(to_mode(cmyk, 3))[0, 0].tolist() == [255, 0, 0]
    ycc = Image.new("RGB", (2, 2), (0, 0, 255)).convert("YCbCr")
    out = np.asarray(to_mode(ycc, 3))[0, 0].astype(int)
    assert out[2] > 240 and out[0] < 15


def test_mode_i16_full_range_gradient_is_rescaled_not_clipped():
    grad = np.tile(np.linspace(0, 65535, 256), (4, 1)).astype(np.uint16)
    loaded = load_image(encode(Image.fromarray(grad), "PNG"))
    assert loaded.mode.startswith("I")
    gray = np.asarray(to_mode(loaded, 1)).astype(int)
    assert gray.min() == 0 and gray.max() == 255
    assert len(np.unique(gray)) > 200  # clipping at 255 would collapse almost everything into one value
    assert np.all(np.diff(gray[0]) >= 0)  # order (contrast) preserved
    assert abs(gray[0, 128] - 128) <= 2


def test_mode_i16_big_endian_and_12_bit_data():
    twelve = (np.arange(64).reshape(8, 8) * 65).astype(np.uint16)  # 0..4095
    img = Image.frombytes("I;16B", (8, 8), twelve.astype(">u2").tobytes())
    gray = np.asarray(to_mode(img, 1)).astype(int)
    assert gray.max() == 255 and gray.min() == 0


def test_mode_i_with_negative_and_wide_values():
    arr = np.array([[-1000, 0], [500_000, 1_000_000]], dtype=np.int32)
    gray = np.asarray(to_mode(Image.fromarray(arr, mode="I"), 1)).astype(int)
    assert gray[0, 0] == 0 and gray[1, 1] == 255 and 0 < gray[1, 0] < 255


def test_mode_i_with_byte_range_values_is_kept():
    arr = np.array([[0, 10], [100, 200]], dtype=np.int32)
    gray = np.asarray(to_mode(Image.fromarray(arr, mode="I"), 1))
    assert gray.tolist() == [[0, 10], [100, 200]]


def test_mode_f_unit_range_and_wide_range():
    unit = np.array([[0.0, 0.5], [0.25, 1.0]], dtype=np.float32)
    assert np.asarray(to_mode(Image.fromarray(unit, mode="F"), 1)).tolist() == [[0, 128], [64, 255]]
    wide = np.array([[0.0, 5000.0], [2500.0, 10000.0]], dtype=np.float32)
    out = np.asarray(to_mode(Image.fromarray(wide, mode="F"), 3))
    assert out.shape == (2, 2, 3) and out[1, 1, 0] == 255 and out[0, 1, 0] in (127, 128)


def test_to_mode_rejects_other_channel_counts():
    with pytest.raises(ValueError):
        to_mode(Image.new("L", (2, 2)), 4)


# ------------------------------------------------------------------ formats


@pytest.mark.parametrize(
    "fmt, kwargs",
    [
        ("PNG", {}),
        ("JPEG", {"quality": 95}),
        ("BMP", {}),
        ("WEBP", {"lossless": True}),
        ("TIFF", {}),
        ("GIF", {}),
    ],
)
def test_each_allowed_format_decodes(fmt, kwargs):
    img = Image.new("RGB", (12, 7), (200, 30, 40))
    loaded = load_image(encode(img, fmt, **kwargs))
    assert loaded.size == (12, 7)
    pixel = np.asarray(to_mode(loaded, 3))[3, 5].astype(int)
    assert np.all(np.abs(pixel - [200, 30, 40]) <= 12)


def test_mpo_is_read_as_jpeg():
    frames = [Image.new("RGB", (10, 6), (0, 200, 0)), Image.new("RGB", (10, 6), (0, 0, 200))]
    raw = encode(frames[0], "MPO", save_all=True, append_images=frames[1:])
    loaded = load_image(raw)
    assert loaded.size == (10, 6)
    assert np.asarray(to_mode(loaded, 3))[3, 5, 1] > 180


def test_animated_gif_gives_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    raw = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(io.BytesIO(raw)).n_frames == 3
    assert np.asarray(to_mode(load_image(raw), 3))[4, 4].tolist() == [255, 0, 0]


def test_multipage_tiff_gives_first_page():
    pages = [Image.new("L", (8, 8), 30), Image.new("L", (8, 8), 220)]
    raw = encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    assert Image.open(io.BytesIO(raw)).n_frames == 2
    assert np.asarray(to_mode(load_image(raw), 1))[0, 0] == 30


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (20, 10), (10, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    raw = encode(img, "JPEG", exif=exif.tobytes())
    assert Image.open(io.BytesIO(raw)).size == (20, 10)
    assert load_image(raw).size == (10, 20)


def test_path_and_str_sources(tmp_path):
    p = tmp_path / "pic.png"
    p.write_bytes(encode(Image.new("L", (5, 3), 9), "PNG"))
    assert load_image(p).size == (5, 3)
    assert load_image(str(p)).size == (5, 3)
    with pytest.raises(UserError, match="file not found: nope.png"):
        load_image(tmp_path / "nope.png")


def test_result_is_detached_and_loaded():
    raw = encode(Image.new("RGB", (4, 4), (1, 2, 3)), "PNG")
    img = load_image(raw)
    assert img.getpixel((0, 0)) == (1, 2, 3)


def test_allowed_extensions_are_lowercase_with_dot():
    assert {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"} <= ALLOWED_EXTENSIONS
    assert all(e.startswith(".") and e == e.lower() for e in ALLOWED_EXTENSIONS)
    assert ".svg" not in ALLOWED_EXTENSIONS


# ------------------------------------------------------------------ model input


@pytest.mark.parametrize("photo", ["astronaut", "camera", "coffee"])
@pytest.mark.parametrize("size, channels", [((28, 28), 1), ((64, 64), 3)])
def test_skimage_photos_through_prepare(photo, size, channels):
    arr = getattr(skdata, photo)()
    raw = encode(Image.fromarray(arr), "PNG")
    x, shown = prepare(raw, size, channels, name=f"{photo}.png")
    assert x.shape == (*size, channels) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 255.0 and x.std() > 5.0
    assert shown.size == (size[1], size[0]) and shown.mode == ("L" if channels == 1 else "RGB")
    assert np.array_equal(np.asarray(shown, dtype=np.float32).reshape(x.shape), x)


def test_to_model_input_matches_pillow_bilinear_and_keeps_h_w_order():
    img = Image.fromarray(skdata.coffee())  # 600 wide, 400 high
    x = to_model_input(img, (20, 30), 3)
    assert x.shape == (20, 30, 3)
    expected = np.asarray(img.resize((30, 20), Image.Resampling.BILINEAR), dtype=np.float32)
    assert np.array_equal(x, expected)
    gray = to_model_input(img.convert("RGBA"), (5, 7), 1)
    assert gray.shape == (5, 7, 1) and gray.dtype == np.float32


# ------------------------------------------------------------------ hostile input


def test_empty_bytes():
    with pytest.raises(UserError, match="^empty file$"):
        load_image(b"")


def test_truncated_png():
    raw = encode(Image.fromarray(skdata.camera()), "PNG")
    with pytest.raises(UserError, match="^file is truncated or corrupt: cut.png$"):
        load_image(raw[: len(raw) // 2], name="cut.png")


@pytest.mark.parametrize(
    "raw",
    [
        b"hello, this is just text\n" * 10,
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
        b'<rect width="10" height="10" fill="red"/></svg>',
        np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    ],
    ids=["text", "svg", "random"],
)
def test_not_an_image(raw):
    with pytest.raises(UserError, match=r"^not an image \(or a format we don't read\): x$"):
        load_image(raw, name="x")


def test_refuses_formats_outside_the_allowlist():
    raw = encode(Image.new("RGB", (8, 8)), "ICO")
    with pytest.raises(UserError, match="not an image"):
        load_image(raw)


def test_decompression_bomb_png_is_refused_without_decoding():
    raw = crafted_png(40000, 40000)
    assert len(raw) < 10_000
    start = time.perf_counter()
    with pytest.raises(UserError, match="^image too large"):
        load_image(raw)
    # even with our own caps lifted, Pillow's bomb guard is turned into the same refusal
    with pytest.raises(UserError, match="^image too large"):
        load_image(raw, max_side=10**6, max_pixels=10**12)
    assert time.perf_counter() - start < 2.0


def test_pillow_bomb_warning_becomes_an_error():
    raw = crafted_png(10000, 10000)  # 100 Mpx: above Pillow's warning threshold, below its hard error
    assert Image.MAX_IMAGE_PIXELS < 10000 * 10000 < 2 * Image.MAX_IMAGE_PIXELS
    with pytest.raises(UserError, match="^image too large"):
        load_image(raw, max_side=10**6, max_pixels=10**12)


def test_side_cap_checked_from_header():
    with pytest.raises(UserError, match=r"^image too large: 13000×10 \(limit 12000 px a side\)$"):
        load_image(crafted_png(13000, 10))
    with pytest.raises(UserError, match=r"^image too large: 40×30 \(limit 32 px a side\)$"):
        load_image(encode(Image.new("L", (40, 30)), "PNG"), max_side=32)


def test_pixel_cap_checked_from_header():
    start = time.perf_counter()
    with pytest.raises(UserError, match=r"^image too large: 9000×9000 \(limit 80 megapixels\)$"):
        load_image(crafted_png(9000, 9000))
    assert time.perf_counter() - start < 1.0


def test_truncated_jpeg_and_damaged_png_data():
    photo = Image.fromarray(skdata.astronaut())
    jpeg = encode(photo, "JPEG", quality=90)
    with pytest.raises(UserError, match="^file is truncated or corrupt$"):
        load_image(jpeg[: len(jpeg) // 3])
    png = bytearray(encode(photo, "PNG"))
    idat = png.index(b"IDAT")
    png[idat + 200 : idat + 600] = bytes(400)  # wipe part of the compressed pixel stream
    with pytest.raises(UserError, match="^file is truncated or corrupt$"):
        load_image(bytes(png))


# ------------------------------------------------------------------ TIFFs Pillow cannot open, HEIC/HEIF photos


def _tiff(arr: np.ndarray, **kwargs) -> bytes:
    import tifffile

    buf = io.BytesIO()
    kwargs.setdefault("photometric", "rgb" if arr.ndim == 3 and arr.shape[-1] == 3 else "minisblack")
    tifffile.imwrite(buf, arr, **kwargs)
    return buf.getvalue()


def test_float32_rgb_tiff_is_read_through_tifffile():
    rng = np.random.default_rng(0)
    unit = rng.random((12, 10, 3)).astype(np.float32)
    unit[0, 0] = (0.0, 0.5, 1.0)
    img = load_image(_tiff(unit), name="unit.tif")
    arr = np.asarray(img)
    assert img.mode == "RGB" and arr.shape == (12, 10, 3)
    assert tuple(arr[0, 0]) == (0, 128, 255)  # 0..1 floats are the usual normalised image: times 255
    wide = (unit * 1000.0 - 5.0).astype(np.float32)  # any other range is stretched min..max
    arr = np.asarray(load_image(_tiff(wide)))
    assert arr.min() == 0 and arr.max() == 255
    x, _ = prepare(_tiff(unit), (6, 5), 1)
    assert x.shape == (6, 5, 1) and 0 <= x.min() and x.max() <= 255


def test_float64_gray_and_uint32_rgb_tiffs():
    gray = np.linspace(0, 1, 80, dtype=np.float64).reshape(8, 10)
    arr = np.asarray(load_image(_tiff(gray)))
    assert arr.shape == (8, 10) and arr[0, 0] == 0 and arr[-1, -1] == 255
    wide = np.full((4, 5, 3), 0x80FF_FFFF, np.uint32)
    assert np.all(np.asarray(load_image(_tiff(wide))) == 0x80)  # keeps the high byte, like 16-bit >> 8


def test_uint16_rgb_tiff_keeps_its_high_byte():
    arr16 = np.array([[[0, 256, 65535], [1000, 30000, 60000]]], dtype=np.uint16)
    arr = np.asarray(load_image(_tiff(arr16)))
    assert arr.shape == (1, 2, 3) and arr.tolist() == (arr16 >> 8).astype(np.uint8).tolist()


def test_tifffile_path_respects_the_pixel_cap():
    with pytest.raises(UserError, match="image too large"):
        load_image(_tiff(np.zeros((40, 50, 3), np.float32)), max_pixels=1000)


def _heic(img: Image.Image) -> bytes:
    pillow_heif = pytest.importorskip("pillow_heif")
    if not pillow_heif.libheif_info().get("HEIF"):
        pytest.skip("this pillow-heif wheel has no HEIF encoder")
    buf = io.BytesIO()
    pillow_heif.from_pillow(img).save(buf, quality=90)
    return buf.getvalue()


def test_heic_photo_decodes(tmp_path):
    src = Image.new("RGB", (64, 48), (200, 40, 30))
    data = _heic(src)
    img = load_image(data, name="IMG_0001.HEIC")
    assert img.mode == "RGB" and img.size == (64, 48)
    r, g, b = np.asarray(img).reshape(-1, 3).mean(axis=0)
    assert abs(r - 200) < 12 and abs(g - 40) < 12 and abs(b - 30) < 12
    assert {".heic", ".heif"} <= ALLOWED_EXTENSIONS
    path = tmp_path / "IMG_0001.heic"
    path.write_bytes(data)
    assert load_image(path).size == (64, 48)


def test_png_data_uri_round_trips_every_channel_layout():
    rng = np.random.default_rng(0)
    for shape in [(5, 7), (5, 7, 1), (5, 7, 3), (5, 7, 4)]:
        a = rng.integers(0, 256, shape, dtype=np.uint8)
        uri = images.png_data_uri(a)
        assert uri.startswith("data:image/png;base64,")
        back = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
        assert back.shape == (shape if len(shape) == 3 and shape[2] != 1 else shape[:2])
        assert np.array_equal(back, a.reshape(back.shape))
