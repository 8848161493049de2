"""Reference data for tests/media.rs: scikit-image's resize and img_as_ubyte, as the original FOMM
demo.py uses them (`resize(frame, (256, 256))[..., :3]`, `img_as_ubyte(prediction)`).

Run from this folder:  python3 make_reference.py
Needs numpy, scipy, scikit-image, safetensors, Pillow. Writes resize_reference.safetensors.
The versions used are recorded in the file's metadata.
"""

import os

import numpy as np
import PIL
import scipy
import skimage
from PIL import Image
from safetensors.numpy import save_file
from skimage import img_as_ubyte
from skimage.transform import resize

HERE = os.path.dirname(os.path.abspath(__file__))


def fixtures_dir():
    """$MARIONETTE_FIXTURES, else ../shared/fixtures/fomm next to the crate (or one level higher)."""
    env = os.environ.get("MARIONETTE_FIXTURES")
    if env:
        return env
    for up in (4, 5):
        d = os.path.join(HERE, *([".."] * up), "shared", "fixtures", "fomm")
        if os.path.isdir(d):
            return d
    raise SystemExit("FOMM fixtures not found: set MARIONETTE_FIXTURES")


FIXTURES = fixtures_dir()


def pattern(h, w, c):
    """Deterministic busy test picture; tests/media.rs computes the same formula."""
    y, x, ch = np.meshgrid(np.arange(h), np.arange(w), np.arange(c), indexing="ij")
    v = x * 31 + y * 17 + ch * 101 + ((x * y) % 29) * 7 + ((x ^ y) & 15) * 5
    return (v % 256).astype(np.uint8)


rng = np.random.RandomState(20240607)
tensors = {}


def add_case(name, img, out_hw, store_input=True, out_dtype=np.float64):
    out = resize(img, out_hw)[..., :3]  # exactly demo.py's call (skimage defaults)
    assert out.dtype == np.float64
    if store_input:
        tensors[f"{name}.input"] = np.ascontiguousarray(img)
    tensors[f"{name}.output"] = np.ascontiguousarray(out.astype(out_dtype))


# (H, W, C) -> (out_H, out_W)
add_case("down2", rng.randint(0, 256, (96, 96, 3)).astype(np.uint8), (48, 48))
add_case("nonsquare", rng.randint(0, 256, (120, 150, 3)).astype(np.uint8), (64, 64))
add_case("mixed", rng.randint(0, 256, (50, 75, 3)).astype(np.uint8), (64, 64))  # H up, W down
add_case("up", rng.randint(0, 256, (30, 25, 3)).astype(np.uint8), (64, 64))
add_case("identity", rng.randint(0, 256, (64, 64, 3)).astype(np.uint8), (64, 64))
add_case("bigfactor", rng.randint(0, 256, (180, 200, 3)).astype(np.uint8), (20, 24))
# Kernel radius (12) longer than the row (7): the mirror extension wraps several times.
add_case("tiny", rng.randint(0, 256, (5, 7, 3)).astype(np.uint8), (2, 1))
add_case("singlerow", rng.randint(0, 256, (1, 9, 3)).astype(np.uint8), (3, 4))
# Constant channels: the clip to the input range matters.
const = np.zeros((20, 30, 3), np.uint8)
const[..., 0] = 255
const[..., 2] = 128
add_case("const", const, (8, 8))
# RGBA: skimage resizes 4 channels (clip range includes alpha), demo.py keeps 3.
rgba = rng.randint(0, 201, (30, 40, 4)).astype(np.uint8)
rgba[..., 3] = 255
add_case("rgba", rgba, (16, 16))
# A real photograph (lossless PNG from the FOMM fixtures), input not stored.
photo = np.asarray(Image.open(os.path.join(FIXTURES, "tiny-input-source.png")).convert("RGB"))
add_case("photo", photo, (80, 96), store_input=False)
# Demo-sized: 512 wide, 600 high (like a portrait photo) -> 256x256; input from pattern().
big = pattern(600, 512, 3)
add_case("big", big, (256, 256), store_input=False, out_dtype=np.float32)
tensors["big.input_row0"] = np.ascontiguousarray(big[0])

# img_as_ubyte on float32 CHW predictions (elementwise, so layout does not matter).
k = np.arange(256, dtype=np.float64)
vals = np.concatenate([
    ((k[:-1] + 0.5) / 255).astype(np.float32),  # near ties
    (k / 255).astype(np.float32),
    np.array([0.0, 1.0, -0.0, -0.001, -0.5, -1.0, 0.5, 1e-8, 0.99999994], np.float32),
    rng.rand(3 * 16 * 20 - 255 - 256 - 9).astype(np.float32),
])
pred = vals.reshape(3, 16, 20)
tensors["ubyte32.input"] = np.ascontiguousarray(pred)
# ascontiguousarray everywhere: safetensors.numpy writes a non-contiguous array in memory order.
tensors["ubyte32.output"] = np.ascontiguousarray(img_as_ubyte(np.transpose(pred, (1, 2, 0))))
pred64 = pred.astype(np.float64) * (1 + 1e-12) - 1e-13
pred64 = np.clip(pred64, -1, 1)
tensors["ubyte64.input"] = np.ascontiguousarray(pred64)
tensors["ubyte64.output"] = np.ascontiguousarray(img_as_ubyte(np.transpose(pred64, (1, 2, 0))))

meta = {
    "scikit-image": skimage.__version__,
    "scipy": scipy.__version__,
    "numpy": np.__version__,
    "Pillow": PIL.__version__,
    "made_by": "tests/data/resize/make_reference.py",
}
save_file(tensors, os.path.join(HERE, "resize_reference.safetensors"), metadata=meta)
print({k: (v.shape, str(v.dtype)) for k, v in tensors.items()})
