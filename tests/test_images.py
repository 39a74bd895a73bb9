"""Image files read as the picture a person sees: 16-bit samples scaled, not clipped; transparency on white; files
the judge or the editor cannot take (32-bit or float samples, several frames, an aspect ratio over 200, a
decompression bomb) refused with the rule named, the same way by the check before the models load and by the read."""

import json
import os
import re
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from shards.dataset import DatasetError, check_images, load_dataset, open_image

GRADIENT = np.arange(65536, dtype=np.uint16).reshape(256, 256)      # every 16-bit value once, 0..65535


def _dataset(folder, files: dict[str, str]) -> str:
    """A dataset of one sample per image file (id = file name), for `check_images`."""
    path = os.path.join(folder, "b.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for name in files:
            f.write(json.dumps({"id": name, "category": "c", "image": name, "instruction": "x"}) + "\n")
    return path


def _checked(folder, name: str):
    path = _dataset(folder, {name: name})
    return check_images(load_dataset(path), path, skip_unreadable=True)


def _sixteen_bit_files(folder) -> dict[str, str]:
    """The gradient as a 16-bit PNG (I;16), a big-endian 16-bit TIFF (I;16B) and a 16-bit PGM (Pillow: mode I)."""
    paths = {name: os.path.join(folder, name) for name in ("grey16.png", "grey16.tif", "grey16.pgm")}
    Image.fromarray(GRADIENT).save(paths["grey16.png"])
    Image.frombytes("I;16B", (256, 256), GRADIENT.astype(">u2").tobytes()).save(paths["grey16.tif"])
    with open(paths["grey16.pgm"], "wb") as f:
        f.write(b"P5\n256 256\n65535\n" + GRADIENT.astype(">u2").tobytes())
    return paths


def test_a_16_bit_gradient_keeps_its_gradient_as_an_original_and_as_a_brought_edit(tmp_path):
    from edit_stage.brought_edits import check_edits, read_edit

    expected = (GRADIENT.astype(np.int64) + 128) // 257                  # round(v / 257): 65535 -> 255
    for name, path in _sixteen_bit_files(tmp_path).items():
        assert Image.open(path).mode in ("I;16", "I;16B", "I")          # what Pillow gives: clipped by .convert
        original = np.asarray(open_image(path))                         # what the edit stage and the judge see
        edited = read_edit(path).numpy()                                # a brought edit, as imported
        for pixels in (original, edited):
            assert pixels.shape == (256, 256, 3) and pixels.dtype == np.uint8, name
            assert len(np.unique(pixels)) == 256, name
            assert (pixels == 255).all(axis=-1).mean() < 0.01, name    # not 99.6 % white
            assert (pixels == expected[..., None]).all(), name
        assert _checked(tmp_path, name).failed == {}
        check_edits({"a": path})                                        # the import's check passes it too


def _transparent_files(folder) -> dict[str, tuple[str, tuple[int, int, int]]]:
    """Files whose one pixel is fully transparent red, green or grey: the judge sees white."""
    made = {}
    Image.new("RGBA", (4, 4), (255, 0, 0, 0)).save(os.path.join(folder, "rgba.png"))
    Image.new("LA", (4, 4), (90, 0)).save(os.path.join(folder, "la.png"))
    Image.new("RGBA", (4, 4), (0, 255, 0, 0)).save(os.path.join(folder, "rgba.webp"), lossless=True)
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0])
    palette.save(os.path.join(folder, "p.png"), transparency=1)         # the palette's colour 1 is transparent
    Image.frombytes("PA", (4, 4), bytes([1, 0] * 16)).save(os.path.join(folder, "pa.tif"))
    Image.new("RGB", (4, 4), (9, 9, 9)).save(os.path.join(folder, "trns.png"), transparency=(9, 9, 9))
    grey = Image.frombytes("I;16", (4, 4), np.full(16, 4000, "<u2").tobytes())
    grey.save(os.path.join(folder, "trns16.png"), transparency=4000)
    for name in ("rgba.png", "la.png", "rgba.webp", "p.png", "pa.tif", "trns.png", "trns16.png"):
        made[name] = (os.path.join(folder, name), (255, 255, 255))
    half = Image.new("RGBA", (4, 4), (0, 0, 255, 128))                 # half transparent blue on white
    half.save(os.path.join(folder, "half.png"))
    made["half.png"] = (os.path.join(folder, "half.png"), (127, 127, 255))
    return made


def test_transparency_is_shown_on_white_as_the_judges_processor_does(tmp_path):
    for name, (path, colour) in _transparent_files(tmp_path).items():
        pixels = np.asarray(open_image(path)).astype(int)
        assert np.abs(pixels - colour).max() <= 1, (name, Image.open(path).mode, pixels[0, 0])


@pytest.mark.parametrize("mode, fmt, value, expected", [
    ("1", "PNG", 1, (255, 255, 255)),
    ("L", "PNG", 77, (77, 77, 77)),
    ("RGB", "PNG", (10, 20, 30), (10, 20, 30)),
    ("CMYK", "TIFF", (0, 255, 255, 0), (255, 0, 0)),
    ("CMYK", "JPEG", (0, 0, 0, 255), (0, 0, 0)),
    ("YCbCr", "TIFF", (128, 128, 128), (128, 128, 128)),
    ("LAB", "TIFF", (128, 128, 128), (119, 119, 119)),
    ("I;16B", "TIFF", 65535, (255, 255, 255)),
    ("I;16", "PNG", 257 * 100, (100, 100, 100)),
])
def test_every_mode_a_file_opens_in_reads_as_its_8_bit_rgb(tmp_path, mode, fmt, value, expected):
    path = str(tmp_path / f"image.{fmt.lower()}")
    Image.new(mode, (8, 8), value).save(path, fmt)
    pixels = np.asarray(open_image(path)).astype(int)
    assert pixels.shape == (8, 8, 3)
    assert np.abs(pixels - expected).max() <= 2, (Image.open(path).mode, pixels[0, 0])
    assert _checked(tmp_path, os.path.basename(path)).failed == {}


def _refused(tmp_path, name: str, words: str) -> None:
    """`open_image`, `check_images` and the import's check all refuse the file, naming the rule."""
    from edit_stage.brought_edits import check_edits
    from shards.images import ImageError

    path = str(tmp_path / name)
    with pytest.raises(ImageError, match=re.escape(words)):
        open_image(path)
    assert _checked(tmp_path, name).failed[name].startswith(f"cannot use image {name}: ")
    assert words in _checked(tmp_path, name).failed[name]
    with pytest.raises(DatasetError) as info:
        check_edits({"s": path})
    assert f"{path}: sample 's': cannot use the edited image: " in str(info.value) and words in str(info.value)


def test_32_bit_integer_and_float_samples_are_refused_naming_the_mode(tmp_path):
    Image.fromarray(np.arange(64, dtype=np.int32).reshape(8, 8) * 1000).save(tmp_path / "i32.tif")
    Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)).save(tmp_path / "f32.tif")
    _refused(tmp_path, "i32.tif", "32-bit integer (Pillow mode I, TIFF)")
    _refused(tmp_path, "f32.tif", "floating-point (Pillow mode F, TIFF)")


@pytest.mark.parametrize("name", ["moving.gif", "moving.png", "moving.webp", "pages.tif"])
def test_animated_images_are_refused_naming_their_frames(tmp_path, name):
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    frames[0].save(tmp_path / name, save_all=True, append_images=frames[1:])
    _refused(tmp_path, name, "it has 3 frames")


def test_a_still_gif_and_a_cameras_mpo_are_read(tmp_path):
    Image.new("RGB", (16, 16), (0, 0, 255)).save(tmp_path / "still.gif")
    first, depth = Image.new("RGB", (16, 16), (250, 0, 0)), Image.new("RGB", (16, 16), (0, 0, 0))
    first.save(tmp_path / "camera.mpo", save_all=True, append_images=[depth])
    assert Image.open(tmp_path / "camera.mpo").n_frames == 2
    assert tuple(np.asarray(open_image(str(tmp_path / "camera.mpo")))[8, 8]) > (240, 0, 0)
    assert tuple(np.asarray(open_image(str(tmp_path / "still.gif")))[8, 8]) == (0, 0, 255)


def test_an_aspect_ratio_the_judge_refuses_is_refused_naming_the_rule(tmp_path):
    Image.new("RGB", (4000, 2), (1, 2, 3)).save(tmp_path / "strip.png")
    Image.new("RGB", (2, 400), (1, 2, 3)).save(tmp_path / "tall.png")       # 200:1 exactly is taken
    _refused(tmp_path, "strip.png", "aspect ratio (4000x2) is over 200:1")
    assert open_image(str(tmp_path / "tall.png")).size == (2, 400)


def _huge_png(path, width: int, height: int) -> None:
    """A valid 1-bit PNG of width x height, all black, written without holding its pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (width + 7) // 8)
    packer = zlib.compressobj()
    body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
                + chunk(b"IDAT", body) + chunk(b"IEND", b""))


@pytest.mark.parametrize("size", [(20000, 20000), (10000, 10000)])
def test_a_decompression_bomb_is_a_clear_error_naming_the_limit(tmp_path, size):
    # 20000x20000 is over twice Pillow's limit (it raises); 10000x10000 is between (Pillow only warns).
    _huge_png(tmp_path / "huge.png", *size)
    _refused(tmp_path, "huge.png", "over 89,478,485 pixels, Pillow's decompression-bomb limit")


def _damaged_files(folder) -> list[str]:
    """Files Pillow fails on with another exception than OSError: a TIFF whose next-page pointer leads into its
    pixels (TypeError 'Missing dimensions', while counting its frames) and a DDS without a pixel-format flag
    (NotImplementedError, while opening)."""
    import io

    tiff = io.BytesIO()
    Image.new("RGB", (16, 16), (100, 100, 100)).save(tiff, "TIFF")
    tiff = bytearray(tiff.getvalue())
    first = struct.unpack("<I", tiff[4:8])[0]
    after = first + 2 + 12 * struct.unpack("<H", tiff[first:first + 2])[0]     # the next page's offset
    tiff[after:after + 4] = struct.pack("<I", 185)
    (folder / "next-page.tif").write_bytes(bytes(tiff))
    dds = io.BytesIO()
    Image.new("RGBA", (8, 8)).save(dds, "DDS")
    dds = bytearray(dds.getvalue())
    dds[80:84] = bytes(4)                                                       # no pixel-format flag
    (folder / "flagless.dds").write_bytes(bytes(dds))
    return ["next-page.tif", "flagless.dds"]


def test_a_damaged_file_is_named_undecodable_whatever_pillow_raises(tmp_path):
    from edit_stage.brought_edits import check_edits
    from launch.importers.common import Row, image_problems

    for name in _damaged_files(tmp_path):
        path = str(tmp_path / name)
        with pytest.raises(OSError):
            open_image(path)
        assert _checked(tmp_path, name).failed[name].startswith(f"cannot decode image {name}: ")
        with pytest.raises(DatasetError, match=f"{re.escape(path)}: sample 's': cannot decode the edited image: "):
            check_edits({"s": path})
        row = Row(id="s", category="c", instruction="x", image=name, source=path)
        assert image_problems([row])[0].startswith(f"s: cannot decode image {path}: ")


def _within(seconds: int, call):
    """`call()`, or a failure when it blocks longer than `seconds` (opening a FIFO waits for a writer)."""
    import signal

    def stop(*_):
        raise TimeoutError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        return call()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_a_fifo_named_like_an_image_is_refused_at_once_not_waited_on(tmp_path):
    from edit_stage.brought_edits import check_edits

    os.mkfifo(tmp_path / "pipe.png")
    path = _dataset(tmp_path, {"pipe.png": "pipe.png"})
    samples = load_dataset(path, allow_missing_images=True)                 # as the stages load it
    failed = _within(10, lambda: check_images(samples, path, skip_unreadable=True)).failed
    assert "not a regular file" in failed["pipe.png"]
    with pytest.raises(OSError, match="not a regular file"):
        _within(10, lambda: open_image(str(tmp_path / "pipe.png")))
    with pytest.raises(DatasetError, match="not a regular file"):
        _within(10, lambda: check_edits({"s": str(tmp_path / "pipe.png")}))
    with pytest.raises(DatasetError, match=r"image file not found|not a regular file") as info:
        load_dataset(path)                                                  # as the launcher loads it
    assert "not a regular file" in str(info.value)
