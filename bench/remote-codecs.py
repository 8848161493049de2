#!/usr/bin/env python3
"""Which codec the rendering server should send its frames in: bytes a frame against PSNR, at
256x256, on frames marionette renders (the classic engine's idle motion on the two bundled
portraits, 90 frames each, as `run --record` writes them).

Candidates: JPEG (Pillow/libjpeg; quality 95 is what Avatarify's remote mode sends), WebP
(libwebp), H.264 (libx264 through FFmpeg, zero-latency tuning, no B-frames, 4:2:0 and 4:4:4, P
frames and all-intra) and VP8 (libvpx, realtime). H.264 and VP8 sizes are the coded packets
(ffprobe), without the container. Each at a 30 fps stream (every frame) and a 10 fps one (every
third frame: a server rendering keyframes at a third of the camera's rate).

    python3 bench/remote-codecs.py [--marionette target/release/marionette]

Needs numpy and Pillow (the PyTorch venv has them: bench/pytorch/setup.sh) and ffmpeg/ffprobe.
"""
import argparse
import glob
import io
import os
import subprocess
import tempfile

import numpy as np
from PIL import Image


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255 ** 2 / max(mse, 1e-12))


def still(frames, fmt, q):
    total, ps = 0, []
    for f in frames:
        buf = io.BytesIO()
        Image.fromarray(f).save(buf, fmt, quality=q)
        total += buf.tell()
        buf.seek(0)
        ps.append(psnr(f, np.asarray(Image.open(buf).convert('RGB'))))
    return total / len(frames), float(np.mean(ps)), float(np.min(ps))


def video(frames, args, ext):
    with tempfile.TemporaryDirectory() as t:
        out = os.path.join(t, 'o.' + ext)
        subprocess.run(['ffmpeg', '-loglevel', 'error', '-y', '-f', 'rawvideo', '-pix_fmt', 'rgb24',
                        '-s', '256x256', '-r', '30', '-i', '-'] + args + [out],
                       input=np.stack(frames).tobytes(), check=True)
        decoded = subprocess.run(['ffmpeg', '-loglevel', 'error', '-i', out, '-f', 'rawvideo',
                                  '-pix_fmt', 'rgb24', '-'], capture_output=True, check=True).stdout
        back = np.frombuffer(decoded, np.uint8).reshape(-1, 256, 256, 3)
        sizes = subprocess.run(['ffprobe', '-v', 'error', '-select_streams', 'v', '-show_entries',
                                'packet=size', '-of', 'csv=p=0', out],
                               capture_output=True, text=True, check=True).stdout.split()
        ps = [psnr(a, b) for a, b in zip(frames, back)]
        return sum(int(s) for s in sizes) / len(frames), float(np.mean(ps)), float(np.min(ps))


def x264(pix_fmt, crf, intra=False):
    return ['-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-bf', '0',
            '-crf', str(crf), '-pix_fmt', pix_fmt] + (['-g', '1'] if intra else [])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--marionette', default='target/release/marionette')
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as work:
        clips = []
        for avatar in ('assets/avatars/eileen-collins.png', 'assets/avatars/grace-hopper.jpg'):
            out = os.path.join(work, os.path.basename(avatar) + '/')
            subprocess.run([a.marionette, 'run', '--engine', 'classic', '--idle', '--avatar', avatar,
                            '--frames', '90', '--vcam', 'none', '--record', out],
                           check=True, capture_output=True,
                           env=dict(os.environ, MARIONETTE_MODEL_DIR=os.path.join(work, 'none')))
            clips.append(sorted(glob.glob(out + 'frame_*.png')))
        for step in (1, 3):
            frames = [np.asarray(Image.open(f).convert('RGB')) for c in clips for f in c[::step]]
            print(f'--- {len(frames)} frames, a {30 // step} fps stream: bytes/frame, mean PSNR, '
                  f'least PSNR')
            rows = [('JPEG q95 (Avatarify)', still(frames, 'JPEG', 95))]
            rows += [(f'JPEG q{q}', still(frames, 'JPEG', q)) for q in (80, 90)]
            rows += [(f'WebP q{q}', still(frames, 'WEBP', q)) for q in (80, 90, 95)]
            for pf in ('yuv420p', 'yuv444p'):
                rows += [(f'H.264 {pf} crf{c}', video(frames, x264(pf, c), 'mp4')) for c in (8, 11, 14, 18)]
            rows += [(f'H.264 yuv444p all-intra crf{c}', video(frames, x264('yuv444p', c, True), 'mp4'))
                     for c in (11, 14)]
            rows += [(f'VP8 crf{c}', video(frames, ['-c:v', 'libvpx', '-deadline', 'realtime',
                                                     '-cpu-used', '8', '-crf', str(c), '-b:v', '5M',
                                                     '-pix_fmt', 'yuv420p'], 'webm'))
                     for c in (4, 10, 20)]
            for name, (b, mean, least) in rows:
                print(f'{name:34s} {b:9.0f} {mean:7.2f} {least:7.2f}')


if __name__ == '__main__':
    main()
