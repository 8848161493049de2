#!/usr/bin/env python3
"""Random, calibrated FOMM weights for a config's structure, set the way the fixture README's "Weights" section
describes (shared/fixtures/fomm/README.md). Writes a safetensors file with keys `kp_detector.<state_dict key>` and
`generator.<state_dict key>` (num_batches_tracked kept as int64 scalars), loadable strictly by the original code.

  FOMM_REPO=target/pytorch/first-order-model target/pytorch/venv/bin/python bench/pytorch/make_weights.py \
      --config crates/fomm/configs/vox-256.yaml --photos assets/avatars/eileen-collins.png \
      assets/avatars/grace-hopper.jpg --out target/pytorch/vox-256-fixturelike.safetensors --seed 0

Procedure (all random draws from one torch.Generator seeded with --seed, in a fixed order):
  1. every nn.Conv2d: weight ~ N(0, 2/fan_in) (fan_in = in_channels/groups * kh * kw), bias ~ U(-0.1, 0.1);
     AntiAliasInterpolation2d `down.weight` buffers are left as the constructor computes them.
  2. The photos are cropped to their top square (centred horizontally), resized to frame_shape, quantised to u8
     (fomm_ref.load_square). They are the calibration batch. kp_detector runs on the batch; the generator runs
     with source = the batch, kp_source = kp(batch), kp_driving = kp(batch rolled by one photo).
  3. Calibration points = every BatchNorm and the head convs (kp_detector.kp, kp_detector.jacobian,
     dense_motion_network.mask, dense_motion_network.occlusion, generator.final), taken one at a time in forward
     execution order (kp_detector first, then generator); each sees the real input produced by the already
     calibrated layers before it:
       BatchNorm: running_mean = mean_c(x) + 0.3 * std_c(x) * U(-1,1); running_var = var_c(x) * U(0.5,1.5);
                  weight ~ U(0.6,1.4); bias ~ U(-0.6,0.6); num_batches_tracked ~ randint[100, 100000).
                  (statistics over batch and space, population variance)
       kp:        per output channel, weight scaled so that logits/temperature have a spatial std (per image,
                  averaged over the batch) of U(1.5, 3); bias ~ U(-0.5, 0.5) (no effect: softmax).
       jacobian:  per output channel, weight scaled to a map std of U(0.08, 0.2);
                  bias = [1,0,0,1] (per key point) + U(-0.25, 0.25).
       mask:      per output channel, weight scaled to a map std of U(1, 2); bias ~ U(-0.5, 0.5).
       occlusion: weight scaled to a map std of 1.5; bias = 1 + U(-0.3, 0.3).
       final:     per output channel, weight scaled to a map std of U(0.7, 1.0); bias ~ U(-0.1, 0.1).
     (map std = std over batch and space of the conv output without its bias.) The head bias ranges follow the
     bias values found in the fixtures' tiny/tiny2 weights; the README does not spell them out except for
     jacobian and occlusion.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fomm_ref as R  # noqa: E402


class _Stop(Exception):
    pass


def _uniform(gen, shape, lo, hi):
    return torch.rand(shape, generator=gen, dtype=torch.float64).mul(hi - lo).add(lo).float()


def _normal(gen, shape, std):
    return torch.randn(shape, generator=gen, dtype=torch.float64).mul(std).float()


def init_convs(module, gen):
    for name, m in module.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            fan_in = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
            m.weight.data.copy_(_normal(gen, m.weight.shape, (2.0 / fan_in) ** 0.5))
            if m.bias is not None:
                m.bias.data.copy_(_uniform(gen, m.bias.shape, -0.1, 0.1))


def forward_order(run, modules):
    """Names of `modules` (dict name -> module) in the order their forward is first entered during run()."""
    order = []
    hooks = [m.register_forward_pre_hook(lambda mod, inp, n=n: order.append(n) if n not in order else None)
             for n, m in modules.items()]
    with torch.no_grad():
        run()
    for h in hooks:
        h.remove()
    return order


def capture_input(run, module):
    box = {}

    def hook(mod, inp):
        box["x"] = inp[0].detach().clone()
        raise _Stop

    h = module.register_forward_pre_hook(hook)
    try:
        with torch.no_grad():
            run()
    except _Stop:
        pass
    finally:
        h.remove()
    if "x" not in box:
        raise RuntimeError("module was not reached")
    return box["x"]


def calibrate_bn(bn, x, gen):
    c = x.shape[1]
    xd = x.double().transpose(0, 1).reshape(c, -1)
    mean = xd.mean(1)
    var = xd.var(1, unbiased=False)
    std = var.sqrt()
    bn.running_mean.copy_((mean + 0.3 * std * _uniform(gen, (c,), -1, 1).double()).float())
    bn.running_var.copy_((var * _uniform(gen, (c,), 0.5, 1.5).double()).float())
    bn.weight.data.copy_(_uniform(gen, (c,), 0.6, 1.4))
    bn.bias.data.copy_(_uniform(gen, (c,), -0.6, 0.6))
    bn.num_batches_tracked.fill_(int(torch.randint(100, 100000, (1,), generator=gen).item()))


def head_output(conv, x):
    return F.conv2d(x, conv.weight, None, conv.stride, conv.padding, conv.dilation, conv.groups).double()


def calibrate_head(kind, conv, x, gen, temperature=None):
    y = head_output(conv, x)
    n_out = y.shape[1]
    w = conv.weight.data
    if kind == "kp":
        cur = (y / temperature).flatten(2).std(2, unbiased=False).mean(0)  # spatial std per image, batch mean
        target = _uniform(gen, (n_out,), 1.5, 3.0).double()
        bias = _uniform(gen, (n_out,), -0.5, 0.5)
    else:
        cur = y.transpose(0, 1).reshape(n_out, -1).std(1, unbiased=False)
        if kind == "jacobian":
            target = _uniform(gen, (n_out,), 0.08, 0.2).double()
            base = torch.tensor([1.0, 0.0, 0.0, 1.0] * (n_out // 4))
            bias = base + _uniform(gen, (n_out,), -0.25, 0.25)
        elif kind == "mask":
            target = _uniform(gen, (n_out,), 1.0, 2.0).double()
            bias = _uniform(gen, (n_out,), -0.5, 0.5)
        elif kind == "occlusion":
            target = torch.full((n_out,), 1.5, dtype=torch.float64)
            bias = 1.0 + _uniform(gen, (n_out,), -0.3, 0.3)
        elif kind == "final":
            target = _uniform(gen, (n_out,), 0.7, 1.0).double()
            bias = _uniform(gen, (n_out,), -0.1, 0.1)
        else:
            raise ValueError(kind)
    scale = (target / cur).float()
    w.mul_(scale.view(-1, 1, 1, 1))
    conv.bias.data.copy_(bias)
    return {"std_before": cur.tolist(), "target": target.tolist()}


def make_weights(config_path, photos, seed):
    config = R.load_config(config_path)
    size = config.get("dataset_params", {}).get("frame_shape", [256, 256, 3])[0]
    torch.manual_seed(seed)
    kp_detector, generator = R.build_models(config)
    gen = torch.Generator().manual_seed(seed)
    init_convs(kp_detector, gen)
    init_convs(generator, gen)

    x = torch.cat([R.u8_to_tensor(R.load_square(p, size)) for p in photos])
    temperature = kp_detector.temperature
    BN = torch.nn.modules.batchnorm._BatchNorm
    log = []

    # ---- kp_detector
    kp_items = {"kp_detector." + n: m for n, m in kp_detector.named_modules() if isinstance(m, BN)}
    kp_items["kp_detector.kp"] = kp_detector.kp
    if kp_detector.jacobian is not None:
        kp_items["kp_detector.jacobian"] = kp_detector.jacobian
    run_kp = lambda: kp_detector(x)
    for name in forward_order(run_kp, kp_items):
        m = kp_items[name]
        xin = capture_input(run_kp, m)
        if isinstance(m, BN):
            calibrate_bn(m, xin, gen)
        else:
            log.append((name, calibrate_head(name.split(".")[-1], m, xin, gen, temperature)))

    with torch.no_grad():
        kp_source = kp_detector(x)
    kp_driving = {k: v.roll(1, 0) for k, v in kp_source.items()}

    # ---- generator
    g_items = {"generator." + n: m for n, m in generator.named_modules() if isinstance(m, BN)}
    dm = generator.dense_motion_network
    if dm is not None:
        g_items["generator.dense_motion_network.mask"] = dm.mask
        if dm.occlusion is not None:
            g_items["generator.dense_motion_network.occlusion"] = dm.occlusion
    g_items["generator.final"] = generator.final
    run_g = lambda: generator(x, kp_driving=kp_driving, kp_source=kp_source)
    order = forward_order(run_g, g_items)
    missing = set(g_items) - set(order)
    if missing:
        raise RuntimeError("not reached: %s" % sorted(missing))
    for name in order:
        m = g_items[name]
        xin = capture_input(run_g, m)
        if isinstance(m, BN):
            calibrate_bn(m, xin, gen)
        else:
            log.append((name, calibrate_head(name.split(".")[-1], m, xin, gen)))

    state = {}
    for prefix, mod in (("kp_detector.", kp_detector), ("generator.", generator)):
        for k, v in mod.state_dict().items():
            state[prefix + k] = v.detach().clone().contiguous()
    return state, x, log


def sanity(config_path, weights_path, x):
    """Strict load into fresh modules, then the statistics the fixture README quotes."""
    kp_detector, generator = R.load_models(config_path, weights_path)
    fomm = R.import_fomm()
    cap = {}
    kp_detector.kp.register_forward_hook(lambda m, i, o: cap.__setitem__("kp", o))
    with torch.no_grad():
        kp = kp_detector(x)
        logits = cap["kp"]
        heat = F.softmax(logits.flatten(2) / kp_detector.temperature, dim=2)
        kp_drv = {k: v.roll(1, 0) for k, v in kp.items()}
        out = generator(x, kp_driving=kp_drv, kp_source=kp)
        rel = []
        for i in range(x.shape[0]):
            s = {k: v[i:i + 1] for k, v in kp.items()}
            d = {k: v[(i + 1) % x.shape[0]:(i + 1) % x.shape[0] + 1] for k, v in kp.items()}
            kn = fomm.normalize_kp(s, d, d, True, True, True)
            rel.append(generator(x[i:i + 1], kp_driving=kn, kp_source=s)["prediction"])
    res = {
        "heatmap_max_per_kp": heat.max(2).values.tolist(),
        "heatmap_shape": list(logits.shape[2:]),
        "kp_value_range": [kp["value"].min().item(), kp["value"].max().item()],
    }
    if "jacobian" in kp:
        res["jacobian_det"] = torch.det(kp["jacobian"]).tolist()
    res["absolute_prediction_std"] = out["prediction"].std().item()
    res["absolute_prediction_range"] = [out["prediction"].min().item(), out["prediction"].max().item()]
    res["identity_relative_prediction_std"] = [p.std().item() for p in rel]
    res["identity_relative_psnr_vs_source"] = [R.psnr(p, x[i:i + 1]) for i, p in enumerate(rel)]
    if "occlusion_map" in out:
        res["occlusion_range"] = [out["occlusion_map"].min().item(), out["occlusion_map"].max().item()]
        res["occlusion_mean"] = out["occlusion_map"].mean().item()
    res["mask_max_mean"] = out["mask"].max(1).values.mean().item()
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--photos", nargs="+", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--align-corners", choices=["true", "false"], default="true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    fomm = R.import_fomm(a.align_corners == "true")
    state, x, log = make_weights(a.config, a.photos, a.seed)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    meta = {
        "note": "random weights calibrated on photos (bench/pytorch/make_weights.py); state_dict of KPDetector "
                "(prefix kp_detector.) and OcclusionAwareGenerator (prefix generator.); num_batches_tracked int64",
        "config": os.path.basename(a.config),
        "photos": ",".join(os.path.basename(p) for p in a.photos),
        "seed": str(a.seed),
        "source_commit": fomm.commit,
        "torch": torch.__version__,
        "grid_sample_align_corners": a.align_corners,
    }
    save_file(state, a.out, metadata=meta)
    n_kp = sum(v.numel() for k, v in state.items() if k.startswith("kp_detector.") and v.dtype == torch.float32)
    n_g = sum(v.numel() for k, v in state.items() if k.startswith("generator.") and v.dtype == torch.float32)
    print("wrote %s: %d tensors, %d kp_detector + %d generator float values" % (a.out, len(state), n_kp, n_g))
    for name, info in log:
        print("  head %-45s std before %s -> target %s" % (
            name, np.round(info["std_before"][:6], 3).tolist(), np.round(info["target"][:6], 3).tolist()))
    res = sanity(a.config, a.out, x)
    print("sanity (strict load OK):")
    print(json.dumps(res, indent=None, default=lambda v: v)[:4000])


if __name__ == "__main__":
    main()
