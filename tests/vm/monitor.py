#!/usr/bin/env python3
"""Reads a V4L2 capture device with read() (not mmap streaming) and prints, per frame, the time it
arrived (Unix seconds) and its MD5, until stopped (SIGINT/SIGTERM) or --seconds pass.

v4l2loopback 0.12.7 keeps one set of buffer state for all its readers, so an mmap reader can be
disturbed by others coming and going (VIDIOC_DQBUF fails with EINVAL); read() does not use that
state, which makes this a witness that the writer keeps writing while other readers churn.

    monitor.py [--wait] DEVICE FRAME_BYTES OUT_FILE

--wait: the device need not be readable yet (a v4l2loopback device with exclusive_caps=1 is a
capture device only once a writer has set a format): it is tried every 10 ms until a first frame
reads, so a monitor started before the writer sees its first frames.
"""
import hashlib
import os
import signal
import sys
import time


def main():
    args = sys.argv[1:]
    wait = args[:1] == ["--wait"]
    if wait:
        args = args[1:]
    device, frame_bytes, out_path = args[0], int(args[1]), args[2]
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    with open(out_path, "w", buffering=1) as out:
        out.write("# started\n")
        fd = open_when_readable(device, frame_bytes, out, stop) if wait else os.open(device, os.O_RDONLY)
        if fd is None:
            return 1
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


def open_when_readable(device, frame_bytes, out, stop):
    """Opens `device` once a read succeeds (that first frame is written to `out`); None if stopped."""
    while not stop:
        try:
            fd = os.open(device, os.O_RDONLY)
        except OSError:
            time.sleep(0.01)
            continue
        try:
            data = os.read(fd, frame_bytes)
        except OSError:
            os.close(fd)
            time.sleep(0.01)
            continue
        if data:
            out.write("%.6f %d %s\n" % (time.time(), len(data), hashlib.md5(data).hexdigest()))
            return fd
        os.close(fd)
        time.sleep(0.01)
    return None


if __name__ == "__main__":
    sys.exit(main())
