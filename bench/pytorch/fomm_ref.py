"""Shared helpers for the PyTorch reference scripts in bench/pytorch/.

Imports the ORIGINAL first-order-model modules from the checkout named by the environment variable
FOMM_REPO (nothing from that repository is copied here), with two runtime shims only:
  * F.grid_sample is wrapped so that align_corners can be chosen (default True = torch <= 1.2 behaviour,
    what the released checkpoints and the fixtures' *-ac-true files use);
  * stub modules `frames_dataset` and `logger` (and `tqdm` / `imageio` if they are not installed) so that
    animate.py imports for its normalize_kp without sklearn / torchvision / skimage / matplotlib.
"""
import contextlib
import copy
import os
import sys
import types

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from safetensors.torch import load_file

_ALIGN_CORNERS = [True]
_ORIG_GRID_SAMPLE = F.grid_sample
_FOMM = None


def _grid_sample(input, grid, mode="bilinear", padding_mode="zeros", align_corners=None):
    if align_corners is None:
        align_corners = _ALIGN_CORNERS[0]
    return _ORIG_GRID_SAMPLE(input, grid, mode=mode, padding_mode=padding_mode, align_corners=align_corners)


def _stub(name, **attrs):
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    sys.modules[name] = mod


def import_fomm(align_corners=True):
    """Returns a namespace with KPDetector, OcclusionAwareGenerator, normalize_kp, repo, commit."""
    global _FOMM
    _ALIGN_CORNERS[0] = bool(align_corners)
    if _FOMM is not None:
        return _FOMM
    repo = os.environ.get("FOMM_REPO")
    if not repo or not os.path.isfile(os.path.join(repo, "modules", "generator.py")):
        sys.exit("FOMM_REPO must point at a checkout of github.com/AliaksandrSiarohin/first-order-model "
                 "(e.g. FOMM_REPO=target/pytorch/first-order-model)")
    repo = os.path.abspath(repo)
    if repo not in sys.path:
        sys.path.insert(0, repo)

    class _Unused:  # placeholder for names animate.py imports but normalize_kp never uses
        def __init__(self, *a, **k):
            raise RuntimeError("stub: not available in the reference harness")

    _stub("frames_dataset", PairedDataset=_Unused, FramesDataset=_Unused)
    _stub("logger", Logger=_Unused, Visualizer=_Unused)
    for name, attrs in (("tqdm", {"tqdm": lambda it, *a, **k: it}), ("imageio", {})):
        try:
            __import__(name)
        except ImportError:
            _stub(name, **attrs)

    torch.nn.functional.grid_sample = _grid_sample
    from modules.keypoint_detector import KPDetector
    from modules.generator import OcclusionAwareGenerator
    from animate import normalize_kp

    commit = "unknown"
    try:
        import subprocess
        commit = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
    except Exception:
        pass
    _FOMM = types.SimpleNamespace(KPDetector=KPDetector, OcclusionAwareGenerator=OcclusionAwareGenerator,
                                  normalize_kp=normalize_kp, repo=repo, commit=commit)
    return _FOMM


def load_config(path):
    with open(path) as f:
        return yaml.safe_load(f)


def build_models(config):
    """Builds (kp_detector, generator) the way the original demo.load_checkpoints does (f32, eval)."""
    fomm = import_fomm(_ALIGN_CORNERS[0])
    mp = config["model_params"]
    generator = fomm.OcclusionAwareGenerator(**mp["generator_params"], **mp["common_params"])
    kp_detector = fomm.KPDetector(**mp["kp_detector_params"], **mp["common_params"])
    return kp_detector.eval(), generator.eval()


def split_state(weights):
    kp, gen = {}, {}
    for k, v in weights.items():
        if k.startswith("kp_detector."):
            kp[k[len("kp_detector."):]] = v
        elif k.startswith("generator."):
            gen[k[len("generator."):]] = v
        else:
            raise KeyError("unexpected key %s" % k)
    return kp, gen


def load_models(config_path, weights_path):
    kp_detector, generator = build_models(load_config(config_path))
    kp, gen = split_state(load_file(weights_path))
    kp_detector.load_state_dict(kp, strict=True)
    generator.load_state_dict(gen, strict=True)
    return kp_detector.eval(), generator.eval()


# ----------------------------------------------------------------------------------------------- images

def png_to_tensor(path):
    a = np.asarray(Image.open(path).convert("RGB"), dtype=np.uint8)
    return u8_to_tensor(a)


def u8_to_tensor(a):
    return torch.from_numpy(a.astype(np.float32) / np.float32(255.0)).permute(2, 0, 1).unsqueeze(0).contiguous()


def tensor_to_u8(t):
    a = t[0].permute(1, 2, 0).clamp(0, 1).numpy()
    return np.round(a * 255.0).astype(np.uint8)


def to_u8(x):
    """float image in [0,1] (HWC) -> uint8, round half to even of x*255 after clipping."""
    return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def top_square(a):
    """Square crop of side min(h, w): the top rows, centred horizontally."""
    h, w = a.shape[:2]
    s = min(h, w)
    x0 = (w - s) // 2
    return a[:s, x0:x0 + s]


def box_down(a, size):
    """Area (box) downsampling of a square float image by an integer factor side/size."""
    s = a.shape[0]
    f = s // size
    if f * size != s:
        raise ValueError("box_down needs an integer factor (%d -> %d)" % (s, size))
    return a.reshape(size, f, size, f, a.shape[2]).mean(axis=(1, 3))


def load_square(path, size):
    """Photo -> top square crop -> size x size (box filter for integer factors, else PIL LANCZOS) -> uint8."""
    a = np.asarray(Image.open(path).convert("RGB"))
    a = top_square(a)
    if a.shape[0] % size == 0:
        return to_u8(box_down(a.astype(np.float64) / 255.0, size))
    im = Image.fromarray(a).resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(im, dtype=np.uint8)


def warp_similarity(img, theta_deg, scale, tx, ty):
    """Bilinear resampling of an HWC float image (edge-clamped): output pixel q = (x, y) takes the value at
    p = c + scale * R(theta) (q - c) + (tx, ty), c = ((w-1)/2, (h-1)/2), R(theta) = [[cos, -sin], [sin, cos]]
    in pixel coordinates (x right, y down)."""
    h, w = img.shape[:2]
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    th = np.deg2rad(theta_deg)
    c, s = np.cos(th), np.sin(th)
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    dx, dy = xx - cx, yy - cy
    px = cx + scale * (c * dx - s * dy) + tx
    py = cy + scale * (s * dx + c * dy) + ty
    px = np.clip(px, 0, w - 1)
    py = np.clip(py, 0, h - 1)
    x0 = np.minimum(np.floor(px).astype(np.int64), w - 2)
    y0 = np.minimum(np.floor(py).astype(np.int64), h - 2)
    fx = (px - x0)[..., None]
    fy = (py - y0)[..., None]
    a = img[y0, x0]
    b = img[y0, x0 + 1]
    cc = img[y0 + 1, x0]
    d = img[y0 + 1, x0 + 1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (cc * (1 - fx) + d * fx) * fy


# ----------------------------------------------------------------------------------------------- precision

@contextlib.contextmanager
def bf16_conv_emulation():
    """Every F.conv2d (nn.Conv2d and the anti-alias blur) gets its input, weight and bias rounded to bf16 and
    is then computed in f32 (exact bf16 products, f32 accumulation, f32 output). Everything else stays f32.
    This is what a bf16-input / f32-accumulate conv kernel computes, up to summation order."""
    orig = torch.nn.functional.conv2d

    def conv2d(input, weight, bias=None, *args, **kwargs):
        r = lambda t: None if t is None else t.to(torch.bfloat16).to(torch.float32)
        return orig(r(input), r(weight), r(bias), *args, **kwargs)

    torch.nn.functional.conv2d = conv2d
    try:
        yield
    finally:
        torch.nn.functional.conv2d = orig


def precision_context(mode):
    """mode: 'f32' | 'bf16' (torch.autocast CPU bfloat16, model and inputs in f32) | 'bf16cl' (the same autocast;
    the models and images are also put in channels_last, see models_for / image_for) | 'bf16conv' (emulation)."""
    if mode == "f32":
        return contextlib.nullcontext()
    if mode in ("bf16", "bf16cl"):
        return torch.autocast("cpu", dtype=torch.bfloat16)
    if mode == "bf16conv":
        return bf16_conv_emulation()
    raise ValueError(mode)


def channels_last(mode):
    """True for the modes that run the networks in torch.channels_last (NHWC) memory format: bf16cl."""
    return mode == "bf16cl"


def models_for(mode, *models):
    """The models as `mode` runs them. bf16cl: a deep copy of each with its 4-D parameters and buffers (conv weights,
    the anti-alias blur kernels) in torch.channels_last, `model.to(memory_format=torch.channels_last)`, the way a
    PyTorch user after the fastest CPU inference sets it up (oneDNN's conv kernels work on NHWC; with NCHW tensors
    PyTorch reorders activations around every conv). A copy because Module.to converts in place and the other modes
    keep running the original NCHW models. Other modes: the models themselves. Values are unchanged either way."""
    if not channels_last(mode):
        return models
    return tuple(copy.deepcopy(m).to(memory_format=torch.channels_last) for m in models)


def image_for(mode, x):
    """An NCHW image tensor as `mode` feeds it to the networks: in bf16cl `.contiguous(memory_format=
    torch.channels_last)` (same shape and values, NHWC strides), else unchanged. Only for the 4-D images; the
    key point tensors (a 4-D jacobian among them) are not images and stay as they are."""
    return x.contiguous(memory_format=torch.channels_last) if channels_last(mode) else x


def kp_f32(kp):
    """Key point dict -> float32 tensors. Needed after kp_detector under autocast: its outputs are bf16 and
    animate.normalize_kp calls .numpy() (scipy ConvexHull), which rejects bf16 tensors."""
    return {k: v.float() for k, v in kp.items()}


def psnr(a, b, peak=1.0):
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    return float("inf") if mse == 0 else 10.0 * np.log10(peak * peak / mse)
