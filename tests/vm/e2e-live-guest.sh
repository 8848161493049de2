#!/bin/sh
# Guest half of the live end-to-end test (tests/live_vm.rs runs it through tests/vm/run.sh):
#   1. vivid webcam (/dev/video0) -> marionette run (tiny FOMM fixture) -> v4l2loopback
#      /dev/video10 as YUYV 640x480, and a recorder writing PNGs;
#   2. idle motion (classic engine, no camera) -> /dev/video10 as I420 1280x720, and a recorder;
# each read back while it runs by an independent V4L2 client (ffmpeg's v4l2 input), which prints
# an MD5 per frame. The host compares those with the recorded frames. A read() witness
# (monitor.py), started before the first marionette, also records the first frames of 1.
# Usage: tests/vm/run.sh OUT_DIR tests/vm/e2e-live-guest.sh MARIONETTE_BIN FIXTURES_DIR [FRAMES [IDLE_FRAMES]]
set -u
bin=${1:?marionette binary}
fixtures=${2:?fixtures dir}
frames=${3:-12}
idle_frames=${4:-30}
cd "${VM_SHARE:?run through tests/vm/run.sh}"

# vivid's colour bars scroll sideways, so the driving frames change.
v4l2-ctl -d /dev/video0 --set-ctrl horizontal_movement=6 > vivid-ctrl.log 2>&1
echo $? > vivid-ctrl.rc

"$bin" devices > devices.txt 2>&1
echo $? > devices.rc

# Waits until the loopback device reports a format (a writer has set one and written), then
# saves it in $1.
wait_format() {
    i=0
    fmt=""
    while [ $i -lt 1200 ] && kill -0 "$pid" 2> /dev/null; do
        read -r fmt < /sys/class/video4linux/video10/format 2> /dev/null || fmt=""
        [ -n "$fmt" ] && break
        sleep 0.1
        i=$((i + 1))
    done
    echo "$fmt" > "$1"
}

# Reads /dev/video10 ($1 = ffmpeg pixel format, $2 = size) into $3 (framemd5) until stopped.
read_back() {
    ffmpeg -hide_banner -nostdin -loglevel error -f v4l2 -input_format "$1" -video_size "$2" \
        -i /dev/video10 -fps_mode passthrough -f framemd5 "$3" 2> "$3.log" &
    fpid=$!
}

# Stops the reader a moment after the writer is gone; saves both exit statuses.
finish() {
    wait "$pid"
    echo $? > "$1.rc"
    sleep 2
    kill -INT "$fpid" 2> /dev/null
    wait "$fpid"
    echo $? > "$1.ffmpeg.rc"
}

# A read() witness waits for the loopback before marionette starts, so it sees the first frames
# (ffmpeg, started once a format is set, takes seconds to start under emulation and misses them).
python3 "$(dirname "$0")/monitor.py" --wait /dev/video10 614400 start-yuyv.txt 2> start-yuyv.log &
monitor=$!
i=0
while [ $i -lt 600 ] && ! grep -q started start-yuyv.txt 2> /dev/null; do
    sleep 0.1
    i=$((i + 1))
done
"$bin" run --camera 0 --config "$fixtures/tiny.yaml" --checkpoint "$fixtures/tiny-legacy.pth.tar" \
    --vcam /dev/video10 --record "$VM_SHARE/rec-yuyv" --frames "$frames" --stats > run-yuyv.log 2>&1 &
pid=$!
wait_format format-yuyv.txt
read_back yuyv422 640x480 recv-yuyv.framemd5
finish run-yuyv
kill -INT "$monitor" 2> /dev/null
wait "$monitor"

"$bin" run --idle --engine classic --vcam /dev/video10 --vcam-format i420 --vcam-size 1280x720 \
    --record "$VM_SHARE/rec-i420" --frames "$idle_frames" --stats > run-i420.log 2>&1 &
pid=$!
wait_format format-i420.txt
read_back yuv420p 1280x720 recv-i420.framemd5
finish run-i420
