"""Reference data for the JPEG tests in tests/media.rs: how Pillow decodes JPEG files.

The original FOMM demo reads pictures with imageio, which decodes JPEG through Pillow (libjpeg-turbo,
default settings). For every case this writes the JPEG file `<name>.jpg` and Pillow's decoded pixels,
`Image.open(jpg).convert("RGB")`, losslessly as `<name>.pillow.png`.

Run from this folder:  python3 make_reference.py
Needs numpy and Pillow built with libjpeg-turbo. The versions used are written to versions.txt.
"""

import os
import shutil

import numpy as np
import PIL
from PIL import Image, features

HERE = os.path.dirname(os.path.abspath(__file__))


def find_dir(*parts):
    """`../shared/<parts>` next to the crate root (main crate), or one level higher (scratch crates)."""
    for up in (4, 5):
        d = os.path.join(HERE, *([".."] * up), "shared", *parts)
        if os.path.isdir(d):
            return d
    raise SystemExit(f"shared/{'/'.join(parts)} not found")


FIXTURES = os.environ.get("MARIONETTE_FIXTURES") or find_dir("fixtures", "fomm")
AVATARS = find_dir("assets", "avatars")


def check_cmyk_formula():
    """Pillow's CMYK -> RGB conversion (Convert.c cmyk2rgb) for every (ink, black) pair, against the
    integer formula that src/media/frames.rs implements."""
    ink, black = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    cmyk = np.stack([ink, ink, ink, black], axis=-1).astype(np.uint8)
    got = np.asarray(Image.fromarray(cmyk, "CMYK").convert("RGB"))[..., 0].astype(np.int64)
    nk = 255 - black
    t = ink * nk + 128
    want = np.clip(nk - (((t >> 8) + t) >> 8), 0, 255)
    assert np.array_equal(got, want), "Pillow's cmyk2rgb is not the formula frames.rs uses"


def cmyk_with_black(im):
    """CMYK with grey component replacement (Pillow's own RGB -> CMYK conversion leaves K at 0)."""
    ink = 255 - np.asarray(im, dtype=np.int64)
    k = ink.min(axis=-1, keepdims=True) * 3 // 4
    return Image.fromarray(np.concatenate([ink - k, k], axis=-1).astype(np.uint8), "CMYK")


def save_case(name, jpg_path):
    with Image.open(jpg_path) as im:
        im.load()
        rgb = np.ascontiguousarray(np.asarray(im.convert("RGB")))
        print(f"{name}: {im.mode} {im.size[0]}x{im.size[1]} {os.path.getsize(jpg_path)} bytes")
    Image.fromarray(rgb, "RGB").save(os.path.join(HERE, f"{name}.pillow.png"), optimize=True)


def main():
    assert features.check_feature("libjpeg_turbo"), "this Pillow does not use libjpeg-turbo"
    check_cmyk_formula()

    # A real photo as it comes (JFIF, 4:2:0, 512x600).
    shutil.copyfile(os.path.join(AVATARS, "grace-hopper.jpg"), os.path.join(HERE, "grace-hopper.jpg"))
    save_case("grace-hopper", os.path.join(HERE, "grace-hopper.jpg"))

    src = Image.open(os.path.join(FIXTURES, "tiny-input-source.png")).convert("RGB")
    # A size that is no multiple of the 16-pixel MCU, for the edge handling of the upsampling.
    odd = src.crop((20, 31, 20 + 161, 31 + 119))
    small = src.crop((64, 40, 64 + 128, 40 + 128))
    # subsampling: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0 (Pillow's JpegImagePlugin).
    cases = [
        ("q75-420", src, dict(quality=75, subsampling=2)),
        ("q95-420", src, dict(quality=95, subsampling=2)),
        ("q95-444", small, dict(quality=95, subsampling=0)),
        ("q75-422-odd", odd, dict(quality=75, subsampling=1)),
        ("q75-420-odd-restart", odd, dict(quality=75, subsampling=2, restart_marker_rows=1)),
        ("progressive-q85-420", src, dict(quality=85, subsampling=2, progressive=True)),
        ("grey-q90", small.convert("L"), dict(quality=90)),
        # Three components stored as RGB (Adobe marker, transform 0) instead of YCbCr.
        ("rgb-q90", small, dict(quality=90, keep_rgb=True)),
        # Four components: Pillow writes inverted CMYK with an Adobe marker and reads it back as such.
        ("cmyk-q90", cmyk_with_black(small), dict(quality=90)),
    ]
    for name, im, opts in cases:
        path = os.path.join(HERE, f"{name}.jpg")
        im.save(path, "JPEG", **opts)
        save_case(name, path)

    # Damaged entropy-coded data in a complete file: libjpeg warns and goes on, Pillow ignores the
    # warnings, so this decodes to (partly garbled) pixels rather than an error.
    data = bytearray(open(os.path.join(HERE, "q95-444.jpg"), "rb").read())
    for at in (len(data) // 3, len(data) // 2, len(data) // 2 + 7):
        data[at] ^= 0x55
    path = os.path.join(HERE, "damaged-q95-444.jpg")
    with open(path, "wb") as f:
        f.write(data)
    save_case("damaged-q95-444", path)

    with open(os.path.join(HERE, "versions.txt"), "w") as f:
        f.write(f"Pillow {PIL.__version__}, libjpeg-turbo {features.version('libjpeg_turbo')}, "
                f"numpy {np.__version__}\n")


if __name__ == "__main__":
    main()
