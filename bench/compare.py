#!/usr/bin/env python3
"""marionette's per-frame step against the original PyTorch code, in the same run.

Alternates, round after round, `marionette bench` (per stage, median of --iters) and the original
code's `bench/pytorch/reference.py time` (same config and thread count, f32 and bf16 autocast), and
reports each round's ratio and the median ratio over rounds: on a shared machine whose speed drifts,
ratios measured side by side are what can be trusted, not absolute times.

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


def ours(args, precision):
    cmd = [os.path.join(ROOT, "target/release/marionette"), "bench", "--config", args.config,
           "--precision", precision, "--threads", str(args.threads), "--iters", str(args.iters), "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


def pytorch(args):
    py = os.path.join(ROOT, "target/pytorch/venv/bin/python")
    cmd = [py, "-W", "ignore", os.path.join(ROOT, "bench/pytorch/reference.py"), "time",
           "--config", os.path.join(ROOT, "models/configs", args.config + ".yaml"),
           "--threads", str(args.threads), "--iters", str(args.iters)]
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
        for mode in ("f32", "bf16"):
            row[f"torch_{mode}.kp"] = t[mode]["kp_detector"]["median_ms"]
            row[f"torch_{mode}.dm"] = t[mode]["dense_motion"]["median_ms"]
            row[f"torch_{mode}.step"] = t[mode]["step"]["median_ms"]
            row[f"torch_{mode}.cached"] = t[mode]["cached_step_ms"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    med = lambda k: statistics.median(r[k] for r in rows)
    ratio = lambda a, b: statistics.median(r[a] / r[b] for r in rows)
    print(f"\n{args.config}, {args.threads} threads, {args.rounds} rounds of {args.iters} iterations; "
          f"median over rounds (ms) and median of the per-round ratios")
    print(f"{'':28} {'ours':>9} {'torch f32':>10} {'torch bf16':>11} {'/ f32':>7} {'/ bf16':>7}")
    for p in precisions:
        for name, label in [("kp", "keypoint detector"), ("dm", "dense motion"), ("step", "whole per-frame step")]:
            tk = "step" if name == "step" else name
            print(f"{p + ' ' + label:28} {med(f'{p}.{name}'):9.1f} {med(f'torch_f32.{tk}'):10.1f} "
                  f"{med(f'torch_bf16.{tk}'):11.1f} {ratio(f'{p}.{name}', f'torch_f32.{tk}'):7.2f} "
                  f"{ratio(f'{p}.{name}', f'torch_bf16.{tk}'):7.2f}")
        print(f"{p + ' step vs cached step':28} {med(f'{p}.step'):9.1f} {med('torch_f32.cached'):10.1f} "
              f"{med('torch_bf16.cached'):11.1f} {ratio(f'{p}.step', 'torch_f32.cached'):7.2f} "
              f"{ratio(f'{p}.step', 'torch_bf16.cached'):7.2f}")


if __name__ == "__main__":
    main()
