#!/usr/bin/env python3
"""marionette's per-frame step against the original PyTorch code, in the same run.

Alternates, round after round, `marionette bench` (per stage, median of --iters) and the original
code's `bench/pytorch/reference.py time` (same config and thread count) in its three CPU modes:
  torch f32     plain float32
  torch bf16    torch.autocast('cpu', dtype=torch.bfloat16), models and inputs as they are (NCHW)
  torch bf16cl  PyTorch's best CPU mode: the same autocast AND models and inputs in torch.channels_last
and reports each round's ratio and the median ratio over rounds: on a shared machine whose speed drifts,
ratios measured side by side are what can be trusted, not absolute times. Ratios are ours / torch (below
1: ours is faster); the `/ bf16cl` column is ours against PyTorch's best CPU mode. Each round prints a
JSON row with ours (`<precision>.{kp,dm,step}`) and torch (`torch_<mode>.{kp,dm,step,cached}`, mode in
f32, bf16, bf16cl), in ms.

    FOMM_REPO=target/pytorch/first-order-model python3 bench/compare.py --rounds 5 --threads 2

Needs a release build (`cargo build --release`) and the PyTorch venv (bench/pytorch/setup.sh).
Both sides use random weights of the config's structure: speed does not depend on the values.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# reference.py time modes, in table order; bf16cl (bf16 autocast + channels_last) is PyTorch's fastest on the CPU
TORCH_MODES = ("f32", "bf16", "bf16cl")


def ours(args, precision):
    cmd = [os.path.join(ROOT, "target/release/marionette"), "bench", "--config", args.config,
           "--precision", precision, "--threads", str(args.threads), "--iters", str(args.iters), "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


def pytorch(args):
    py = os.path.join(ROOT, "target/pytorch/venv/bin/python")
    cmd = [py, "-W", "ignore", os.path.join(ROOT, "bench/pytorch/reference.py"), "time",
           "--config", os.path.join(ROOT, "crates/fomm/configs", args.config + ".yaml"),
           "--threads", str(args.threads), "--iters", str(args.iters), "--modes", ",".join(TORCH_MODES)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    line = [l for l in out.splitlines() if l.startswith("JSON ")][-1]
    return {r["mode"]: r for r in json.loads(line[5:])["results"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="vox-256")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--precisions", default="f32,auto")
    args = ap.parse_args()
    if not os.environ.get("FOMM_REPO"):
        sys.exit("set FOMM_REPO to a checkout of the original first-order-model code (bench/pytorch/README.md)")
    precisions = args.precisions.split(",")
    rows = []
    for r in range(args.rounds):
        m = {p: ours(args, p) for p in precisions}
        t = pytorch(args)
        row = {"round": r, "load": os.getloadavg()[0]}
        for p in precisions:
            for name, key in [("kp", "kp_detector_ms"), ("dm", "dense_motion_ms"), ("step", "per_frame_ms")]:
                row[f"{p}.{name}"] = m[p][key]
        for mode in TORCH_MODES:
            row[f"torch_{mode}.kp"] = t[mode]["kp_detector"]["median_ms"]
            row[f"torch_{mode}.dm"] = t[mode]["dense_motion"]["median_ms"]
            row[f"torch_{mode}.step"] = t[mode]["step"]["median_ms"]
            row[f"torch_{mode}.cached"] = t[mode]["cached_step_ms"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    med = lambda k: statistics.median(r[k] for r in rows)
    ratio = lambda a, b: statistics.median(r[a] / r[b] for r in rows)
    print(f"\n{args.config}, {args.threads} threads, {args.rounds} rounds of {args.iters} iterations; "
          f"median over rounds (ms) and median of the per-round ratios ours / torch (below 1: ours faster)")
    print("torch bf16cl = PyTorch's best CPU mode: bf16 autocast + channels_last")
    print(f"{'':28} {'ours':>9}" + "".join(f" {'torch ' + m:>12}" for m in TORCH_MODES)
          + "".join(f" {'/ ' + m:>8}" for m in TORCH_MODES))
    # (label, our key, torch key): the last line sets our step against torch's step as it would be with the
    # source encoding cached (kp_detector + generator - encoder), a saving the original code does not make
    lines = [("keypoint detector", "kp", "kp"), ("dense motion", "dm", "dm"), ("whole per-frame step", "step", "step"),
             ("step vs cached step", "step", "cached")]
    for p in precisions:
        for label, ok, tk in lines:
            print(f"{p + ' ' + label:28} {med(f'{p}.{ok}'):9.1f}"
                  + "".join(f" {med(f'torch_{m}.{tk}'):12.1f}" for m in TORCH_MODES)
                  + "".join(f" {ratio(f'{p}.{ok}', f'torch_{m}.{tk}'):8.2f}" for m in TORCH_MODES))
    print("\nours / PyTorch best CPU mode (bf16 autocast + channels_last), median of the per-round ratios:")
    for p in precisions:
        print(f"  {p:6} " + ", ".join(f"{label} {ratio(f'{p}.{ok}', f'torch_bf16cl.{tk}'):.2f}"
                                      for label, ok, tk in lines))


if __name__ == "__main__":
    main()
