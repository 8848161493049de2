#!/usr/bin/env python3
"""Reads a V4L2 capture device with read() (not mmap streaming) and prints, per frame, the time it
arrived (Unix seconds) and its MD5, until stopped (SIGINT/SIGTERM) or --seconds pass.

v4l2loopback 0.12.7 keeps one set of buffer state for all its readers, so an mmap reader can be
disturbed by others coming and going (VIDIOC_DQBUF fails with EINVAL); read() does not use that
state, which makes this a witness that the writer keeps writing while other readers churn.

    monitor.py DEVICE FRAME_BYTES OUT_FILE
"""
import hashlib
import os
import signal
import sys
import time


def main():
    device, frame_bytes, out_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    fd = os.open(device, os.O_RDONLY)
    with open(out_path, "w", buffering=1) as out:
        while not stop:
            try:
                data = os.read(fd, frame_bytes)
            except InterruptedError:
                continue
            except OSError as e:
                out.write("# error %s\n" % e)
                return 1
            if not data:
                out.write("# end of stream\n")
                return 1
            out.write("%.6f %d %s\n" % (time.time(), len(data), hashlib.md5(data).hexdigest()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
