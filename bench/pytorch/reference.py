#!/usr/bin/env python3
"""PyTorch reference for reduced-precision (bf16) FOMM on the CPU: the ORIGINAL first-order-model code (imported from
$FOMM_REPO, grid_sample with align_corners=True) in float32 vs bfloat16.

Precision modes
  f32       plain float32 (the reference).
  bf16      torch.autocast('cpu', dtype=torch.bfloat16) around the whole step, model weights and inputs in f32, as a
            PyTorch user would turn it on. One unavoidable change: kp_detector outputs come out bf16 under autocast
            and animate.normalize_kp feeds them to scipy via .numpy(), which rejects bf16, so the key point dicts
            are cast back to f32 (`{k: v.float()}`) right after each kp_detector call (in every mode; a no-op in
            f32). Everything else runs as autocast decides (conv/matmul in bf16, grid_sample/inverse in f32, the
            rest in whatever dtype reaches it).
  bf16cl    PyTorch's fastest CPU mode: the bf16 autocast above AND channels_last memory format, i.e. (copies of)
            the models converted with `model.to(memory_format=torch.channels_last)` and the input images with
            `.contiguous(memory_format=torch.channels_last)`, once, before the step (fomm_ref.models_for /
            image_for). Same computation as bf16 in NHWC layout: oneDNN's convs run without activation reorders.
  bf16conv  (quality only, extra) an emulation of a bf16-input / f32-accumulate conv kernel: every F.conv2d gets
            its input, weight and bias rounded to bf16 and is computed in f32; everything else stays f32.
  <m>-gen   (quality only) kp_detector in f32, generator (and normalize_kp) in mode <m>: the generator's share.
  <m>-kp    (quality only) kp_detector in mode <m>, generator in f32: the key points' share.

Subcommands
  quality --model tiny|tiny2|vox-256   per-frame PSNR of bf16, bf16cl (and bf16conv) predictions against f32,
                                       relative and absolute animation, key point errors; writes
                                       target/pytorch/quality-<model>.safetensors and .json
  time --config C [--weights W]       median ms per stage, f32, bf16 autocast and bf16cl (autocast + channels_last),
                                       at the given thread counts
  isa                                 which oneDNN kernels (ISA, data types) run in f32, bf16 and bf16cl

vox-256 inputs (written as lossless PNGs to target/pytorch/vox-inputs/, tensor == png/255 exactly):
  source    assets/avatars/eileen-collins.png (512x512) -> 2x2 box average -> 256x256 -> u8 (round half even).
  driving   assets/avatars/grace-hopper.jpg (512x600): top 512x512 -> 2x2 box average -> 256x256 float base B
            (not quantised), then frame k = bilinear, edge-clamped resampling of B where output pixel q = (x, y)
            takes B at p = c + s R(theta) (q - c) + t, c = (127.5, 127.5), R(theta) = [[cos, -sin], [sin, cos]]
            (pixels, x right, y down), then -> u8. (theta deg, s, t px) per frame: VOX_DRIVING below.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, HERE)
import fomm_ref as R  # noqa: E402

FIXTURES = os.environ.get("MARIONETTE_FIXTURES", os.path.join(ROOT, "..", "shared", "fixtures", "fomm"))
OUT_DIR = os.path.join(ROOT, "target", "pytorch")
VOX_CONFIG = os.path.join(ROOT, "crates", "fomm", "configs", "vox-256.yaml")
VOX_WEIGHTS = os.path.join(OUT_DIR, "vox-256-fixturelike.safetensors")
VOX_SOURCE = os.path.join(ROOT, "assets", "avatars", "eileen-collins.png")
VOX_DRIVER = os.path.join(ROOT, "assets", "avatars", "grace-hopper.jpg")
# (theta degrees, scale, tx px, ty px) of p = c + s R(theta) (q - c) + t, per driving frame
VOX_DRIVING = [(0.0, 1.00, 0.0, 0.0), (4.0, 1.00, 6.0, -3.0), (-6.0, 1.06, -5.0, 4.0), (2.0, 0.94, 3.0, 6.0)]


# ------------------------------------------------------------------------------------------------ inputs

def vox_inputs(png_dir=None):
    src = R.load_square(VOX_SOURCE, 256)
    a = R.top_square(np.asarray(Image.open(VOX_DRIVER).convert("RGB"))).astype(np.float64) / 255.0
    base = R.box_down(a, 256)
    frames = [R.to_u8(R.warp_similarity(base, *p)) for p in VOX_DRIVING]
    if png_dir:
        os.makedirs(png_dir, exist_ok=True)
        Image.fromarray(src).save(os.path.join(png_dir, "source.png"))
        for i, f in enumerate(frames):
            Image.fromarray(f).save(os.path.join(png_dir, "driving%d.png" % i))
        with open(os.path.join(png_dir, "README.txt"), "w") as fh:
            fh.write("Made by bench/pytorch/reference.py (vox_inputs). source.png = eileen-collins.png 2x2 box "
                     "average to 256x256. drivingN.png = grace-hopper.jpg top 512x512, 2x2 box average, then "
                     "output pixel q samples the base at p = c + s R(theta)(q - c) + t, c = (127.5, 127.5), "
                     "bilinear, edge clamp. (theta deg, s, tx, ty) per frame: %s\n" % (VOX_DRIVING,))
    return R.u8_to_tensor(src), [R.u8_to_tensor(f) for f in frames]


def fixture_inputs(name):
    t = load_file(os.path.join(FIXTURES, "%s-inputs.safetensors" % name))
    n = len([k for k in t if k.startswith("driving.")])
    return t["source"], [t["driving.%d" % i] for i in range(n)]


def model_setup(name):
    if name in ("tiny", "tiny2"):
        cfg = os.path.join(FIXTURES, name + ".yaml")
        w = os.path.join(FIXTURES, name + ".safetensors")
        src, drv = fixture_inputs(name)
    elif name == "vox-256":
        cfg, w = VOX_CONFIG, VOX_WEIGHTS
        if not os.path.exists(w):
            sys.exit("%s missing: run bench/pytorch/make_weights.py first (see README)" % w)
        src, drv = vox_inputs(os.path.join(OUT_DIR, "vox-inputs"))
    else:
        raise ValueError(name)
    return cfg, w, src, drv


# ------------------------------------------------------------------------------------------------ quality

def split_mode(mode):
    """'bf16' -> (bf16, bf16): both networks; 'bf16-gen' -> (f32, bf16): generator (and normalize_kp) only;
    'bf16-kp' -> (bf16, f32): kp_detector only."""
    if mode.endswith("-gen"):
        return "f32", mode[:-4]
    if mode.endswith("-kp"):
        return mode[:-3], "f32"
    return mode, mode


def animate_all(kd, g, normalize_kp, src, drv, mode):
    kd_mode, g_mode = split_mode(mode)
    # each network with its mode's memory format (bf16cl: channels_last copies of the models and the images)
    kd, = R.models_for(kd_mode, kd)
    g, = R.models_for(g_mode, g)
    kd_src, kd_drv = R.image_for(kd_mode, src), [R.image_for(kd_mode, d) for d in drv]
    src = R.image_for(g_mode, src)
    out = {}
    dtypes = {}
    with torch.no_grad():
        with R.precision_context(kd_mode):
            raw = kd(kd_src)
            dtypes["kp_detector.value"] = str(raw["value"].dtype)
            dtypes["kp_detector.jacobian"] = str(raw["jacobian"].dtype) if "jacobian" in raw else None
            kp_s = R.kp_f32(raw)
            kp_d = [R.kp_f32(kd(d)) for d in kd_drv]
        for k, v in kp_s.items():
            out["kp_source.%s" % k] = v
        for i, kp in enumerate(kp_d):
            for k, v in kp.items():
                out["kp_driving.%d.%s" % (i, k)] = v
        with R.precision_context(g_mode):
            for i, kp in enumerate(kp_d):
                kn = normalize_kp(kp_source=kp_s, kp_driving=kp, kp_driving_initial=kp_d[0],
                                  adapt_movement_scale=True, use_relative_movement=True,
                                  use_relative_jacobian=True)
                for k, v in kn.items():
                    out["kp_norm.%d.%s" % (i, k)] = v
                dtypes["kp_norm.jacobian"] = str(kn["jacobian"].dtype) if "jacobian" in kn else None
                pr = g(src, kp_source=kp_s, kp_driving=kn)["prediction"]
                dtypes["prediction"] = str(pr.dtype)
                dtypes["prediction.channels_last"] = pr.is_contiguous(memory_format=torch.channels_last)
                out["relative.%d.prediction" % i] = pr
                out["absolute.%d.prediction" % i] = g(src, kp_source=kp_s, kp_driving=kp)["prediction"]
    out = {k: v.detach().float().contiguous() for k, v in out.items()}  # NCHW contiguous again for bf16cl
    return out, dtypes


def max_abs(a, b):
    return (a - b).abs().max().item()


def cmd_quality(a):
    torch.set_num_threads(a.threads)
    fomm = R.import_fomm(True)
    cfg, wpath, src, drv = model_setup(a.model)
    kd, g = R.load_models(cfg, wpath)
    n = len(drv)
    res = {m: animate_all(kd, g, fomm.normalize_kp, src, drv, m) for m in a.modes}
    ref = res["f32"][0]

    report = {"model": a.model, "config": cfg, "weights": wpath, "torch": torch.__version__,
              "fomm_commit": fomm.commit, "grid_sample_align_corners": True, "threads": a.threads,
              "frames": n, "psnr_peak": 1.0, "modes": {}}
    if a.model in ("tiny", "tiny2"):
        fx = load_file(os.path.join(FIXTURES, "%s-outputs-ac-true.safetensors" % a.model))
        report["f32_vs_fixture_max_abs"] = max(
            max_abs(ref[k], fx[k]) for k in ref if k in fx)
        report["f32_vs_fixture_keys_compared"] = len([k for k in ref if k in fx])
    for m in a.modes:
        if m == "f32":
            continue
        o, dt = res[m]
        r = {"dtypes_inside": dt}
        for anim in ("relative", "absolute"):
            ps = [R.psnr(o["%s.%d.prediction" % (anim, i)], ref["%s.%d.prediction" % (anim, i)]) for i in range(n)]
            mx = [max_abs(o["%s.%d.prediction" % (anim, i)], ref["%s.%d.prediction" % (anim, i)]) for i in range(n)]
            worst = int(np.argmin(ps))
            r[anim] = {"psnr": ps, "worst_frame": worst, "worst_psnr": ps[worst], "pred_max_abs": mx}
        for grp, pat in (("kp_source", "kp_source."), ("kp_driving", "kp_driving."), ("kp_norm", "kp_norm.")):
            for fld in ("value", "jacobian"):
                keys = [k for k in ref if k.startswith(pat) and k.endswith("." + fld)]
                if keys:
                    r["%s.%s_max_abs" % (grp, fld)] = max(max_abs(o[k], ref[k]) for k in keys)
        dets = [torch.det(ref[k]).abs().min().item() for k in ref if k.endswith("jacobian")]
        r["f32_min_abs_det_of_jacobians"] = min(dets) if dets else None
        report["modes"][m] = r

    # ---- tensors for the Rust side
    tensors = {"input.source": src.contiguous()}
    for i, d in enumerate(drv):
        tensors["input.driving.%d" % i] = d.contiguous()
    for m in a.modes:
        for k, v in res[m][0].items():
            tensors["%s.%s" % (m, k)] = v
    os.makedirs(OUT_DIR, exist_ok=True)
    base = os.path.join(OUT_DIR, "quality-%s" % a.model)
    meta = {"report": json.dumps(report), "layout": "NCHW float32; bf16 results stored as float32 (exact)",
            "keys": "input.{source,driving.N}; <mode>.{kp_source,kp_driving.N,kp_norm.N}.{value,jacobian}; "
                    "<mode>.{relative,absolute}.N.prediction; mode in f32|bf16 (autocast)|bf16cl (autocast + "
                    "channels_last)|bf16conv (emulation), "
                    "suffix -gen: only the generator reduced, -kp: only the kp_detector reduced"}
    save_file(tensors, base + ".safetensors", metadata=meta)
    with open(base + ".json", "w") as fh:
        json.dump(report, fh, indent=1)

    print("model %s (%s, %s), %d driving frames, torch %s, threads %d" % (
        a.model, os.path.basename(cfg), os.path.basename(wpath), n, torch.__version__, a.threads))
    if "f32_vs_fixture_max_abs" in report:
        print("f32 vs fixture %s-outputs-ac-true: max abs %.3g over %d tensors" % (
            a.model, report["f32_vs_fixture_max_abs"], report["f32_vs_fixture_keys_compared"]))
    for m, r in report["modes"].items():
        print("[%s vs f32] inside dtypes %s" % (m, r["dtypes_inside"]))
        for anim in ("relative", "absolute"):
            x = r[anim]
            print("  %-8s PSNR dB per frame %s  worst frame %d: %.2f dB; pred max abs %s" % (
                anim, " ".join("%.2f" % p for p in x["psnr"]), x["worst_frame"], x["worst_psnr"],
                " ".join("%.3g" % v for v in x["pred_max_abs"])))
        print("  kp max abs: " + ", ".join("%s %.3g" % (k[:-8], v) for k, v in r.items() if k.endswith("_max_abs")))
    print("wrote %s.safetensors and .json" % base)


# ------------------------------------------------------------------------------------------------ timing

def _bench(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": statistics.median(ts), "min_ms": min(ts), "max_ms": max(ts)}


def cmd_time(a):
    fomm = R.import_fomm(True)
    config = R.load_config(a.config)
    size = config.get("dataset_params", {}).get("frame_shape", [256, 256, 3])[0]
    if a.weights:
        kd0, g0 = R.load_models(a.config, a.weights)
    else:
        torch.manual_seed(0)
        kd0, g0 = R.build_models(config)
    src0 = R.u8_to_tensor(R.load_square(a.source, size))
    drv0 = R.u8_to_tensor(R.load_square(a.driving, size))
    threads = [int(t) for t in a.threads.split(",")]
    load0 = os.getloadavg()
    results = []
    for nt in threads:
        torch.set_num_threads(nt)
        for mode in a.modes:
            # bf16cl: channels_last copies of the models and the two frames, made once outside the timed code (a
            # user converts the weights once; per frame it would be one copy of a small 3-channel image)
            kd_m, g_m = R.models_for(mode, kd0, g0)
            src, drv = R.image_for(mode, src0), R.image_for(mode, drv0)
            with torch.no_grad(), R.precision_context(mode):
                # the portrait side, computed once (as demo.make_animation does before its loop)
                kp_src = R.kp_f32(kd_m(src))
                kp_init = R.kp_f32(kd_m(drv))
                kp_norm = fomm.normalize_kp(kp_source=kp_src, kp_driving=kp_init, kp_driving_initial=kp_init,
                                            adapt_movement_scale=True, use_relative_movement=True,
                                            use_relative_jacobian=True)

                def encoder():
                    out = g_m.first(src)
                    for blk in g_m.down_blocks:
                        out = blk(out)
                    return out

                def step():
                    kp_d = R.kp_f32(kd_m(drv))
                    kn = fomm.normalize_kp(kp_source=kp_src, kp_driving=kp_d, kp_driving_initial=kp_init,
                                           adapt_movement_scale=True, use_relative_movement=True,
                                           use_relative_jacobian=True)
                    return g_m(src, kp_source=kp_src, kp_driving=kn)["prediction"]

                stages = {
                    "kp_detector": lambda: kd_m(drv),
                    "dense_motion": lambda: g_m.dense_motion_network(source_image=src, kp_driving=kp_norm,
                                                                     kp_source=kp_src),
                    "generator": lambda: g_m(src, kp_source=kp_src, kp_driving=kp_norm),
                    "encoder": encoder,
                    "step": step,
                }
                row = {"threads": nt, "mode": mode}
                for name, fn in stages.items():
                    row[name] = _bench(fn, a.warmup, a.iters)
                row["cached_step_ms"] = (row["kp_detector"]["median_ms"] + row["generator"]["median_ms"]
                                         - row["encoder"]["median_ms"])
                results.append(row)
                print("  done threads=%d mode=%s" % (nt, mode), file=sys.stderr, flush=True)
    load1 = os.getloadavg()
    names = ["kp_detector", "dense_motion", "generator", "encoder", "step"]
    print("config %s, weights %s, %dx%d, torch %s, iters %d (+%d warm-up), median ms" % (
        os.path.basename(a.config), os.path.basename(a.weights) if a.weights else "constructor init", size, size,
        torch.__version__, a.iters, a.warmup))
    print("%-7s %-6s " % ("threads", "mode") + " ".join("%12s" % n for n in names) + " %14s" % "cached_step")
    for r in results:
        print("%-7d %-6s " % (r["threads"], r["mode"]) + " ".join("%12.1f" % r[n]["median_ms"] for n in names)
              + " %14.1f" % r["cached_step_ms"])
    print("cached_step = kp_detector + generator - encoder (per-frame work with the source encoding cached)")
    print("loadavg before %s after %s" % (" ".join("%.2f" % x for x in load0), " ".join("%.2f" % x for x in load1)))
    js = {"config": a.config, "weights": a.weights, "torch": torch.__version__, "iters": a.iters,
          "warmup": a.warmup, "loadavg_before": load0, "loadavg_after": load1, "results": results}
    print("JSON " + json.dumps(js))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(js, fh, indent=1)


# ------------------------------------------------------------------------------------------------ isa

_ISA_CHILD = r"""
import os, sys, torch
sys.path.insert(0, %(here)r)
import fomm_ref as R
R.import_fomm(True)
torch.set_num_threads(2)
if os.path.exists(%(w)r):
    kd, g = R.load_models(%(cfg)r, %(w)r)
else:  # constructor init: the kernels chosen do not depend on the weight values
    torch.manual_seed(0)
    kd, g = R.build_models(R.load_config(%(cfg)r))
mode = sys.argv[1]
kd, g = R.models_for(mode, kd, g)
x = R.image_for(mode, torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0)))
with torch.no_grad(), R.precision_context(mode):
    kp = R.kp_f32(kd(x))
    g(x, kp_source=kp, kp_driving=kp)
    print("MARK", flush=True)
    kp = R.kp_f32(kd(x))
    g(x, kp_source=kp, kp_driving=kp)
"""


def cmd_isa(a):
    cfg = a.config
    w = a.weights
    code = _ISA_CHILD % {"here": HERE, "cfg": cfg, "w": w}
    env = dict(os.environ, ONEDNN_VERBOSE="1", DNNL_VERBOSE="1")
    print("torch %s, cpu capability %s, mkldnn bf16 supported %s" % (
        torch.__version__, torch.backends.cpu.get_cpu_capability(),
        getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: "?")()))
    for mode in ("f32", "bf16", "bf16cl"):
        p = subprocess.run([sys.executable, "-W", "ignore", "-c", code, mode], capture_output=True, text=True,
                           env=env)
        lines = p.stdout.splitlines()
        if "MARK" in lines:  # count the second (warm) forward only
            lines = lines[lines.index("MARK") + 1:]
        counts = {}
        for ln in lines:
            f = ln.split(",")
            if len(f) > 8 and f[0].startswith("onednn_verbose") and "exec" in f:
                i = f.index("exec")
                prim, impl = f[i + 2], f[i + 3]
                dt = " ".join(t for t in ln.split(",")[i + 5].split(" ") if t.split(":")[0] in ("src", "wei", "dst")
                              ) if len(f) > i + 5 else ""
                key = "%s | %s | %s" % (prim, impl, " ".join(x.split(":")[0] + ":" + x.split(":")[1]
                                                               for x in dt.split(" ") if ":" in x))
                counts[key] = counts.get(key, 0) + 1
        print("[%s] oneDNN primitives executed in one kp_detector + generator forward (rc %d):" % (mode, p.returncode))
        if not counts:
            print("   none (convolutions did not go through oneDNN)")
            print("   stderr tail: " + p.stderr[-500:])
        for k, c in sorted(counts.items(), key=lambda kv: -kv[1]):
            print("   %4d x %s" % (c, k))


# ------------------------------------------------------------------------------------------------ main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--model", required=True, choices=["tiny", "tiny2", "vox-256"])
    q.add_argument("--threads", type=int, default=2)
    q.add_argument("--modes", default="f32,bf16,bf16cl,bf16conv,bf16-gen,bf16conv-gen,bf16-kp,bf16conv-kp",
                   type=lambda s: s.split(","))
    t = sub.add_parser("time")
    t.add_argument("--config", required=True)
    t.add_argument("--weights")
    t.add_argument("--threads", default="1,2")
    t.add_argument("--iters", type=int, default=10)
    t.add_argument("--warmup", type=int, default=2)
    t.add_argument("--modes", default="f32,bf16,bf16cl", type=lambda s: s.split(","))
    t.add_argument("--source", default=VOX_SOURCE)
    t.add_argument("--driving", default=VOX_DRIVER)
    t.add_argument("--json")
    i = sub.add_parser("isa")
    i.add_argument("--config", default=VOX_CONFIG)
    i.add_argument("--weights", default=VOX_WEIGHTS)
    a = ap.parse_args()
    if a.cmd == "quality":
        if a.modes[0] != "f32":
            a.modes = ["f32"] + [m for m in a.modes if m != "f32"]
        cmd_quality(a)
    elif a.cmd == "time":
        cmd_time(a)
    else:
        cmd_isa(a)


if __name__ == "__main__":
    main()
