#!/bin/sh
# Guest half of tests/vm/selftest.sh (runs inside the VM through run.sh; POSIX sh).
#
#   selftest-guest.sh <frames>
#
# webcam (vivid) -> producer ffmpeg -> v4l2loopback /dev/video10 -> consumer ffmpeg
#
# The producer reads the vivid webcam (YUYV 640x480, 25 fps: vivid's fastest rate
# at that size) and writes every frame both to the loopback device (V4L2 output,
# write()) and, as per-frame MD5s, to sent.md5. Once the loopback device reports
# a format (it turns into a capture device only then, exclusive_caps=1), the
# consumer reads <frames> frames back into recv.yuv (raw YUYV).
# The host (selftest.sh) checks the files. All files go to $VM_SHARE.
set -eu

frames=${1:?usage: selftest-guest.sh <frames>}
out=${VM_SHARE:?VM_SHARE not set: run this through tests/vm/run.sh}
cd "$out"

up() { cut -d' ' -f1 /proc/uptime; }
fail() {
    echo "selftest-guest: FAIL: $*" >&2
    exit 1
}

# Find the nodes by driver name rather than trusting fixed numbers.
cam=""
lb=""
for d in /sys/class/video4linux/video*; do
    read -r name < "$d/name" || continue
    case "$name" in
        vivid-*-vid-cap) cam=/dev/${d##*/} ;;
        marionette) lb=/dev/${d##*/} ;;
    esac
done
[ -n "$cam" ] || fail "no vivid capture node in /sys/class/video4linux"
[ -n "$lb" ] || fail "no v4l2loopback node labelled 'marionette' in /sys/class/video4linux"
echo "webcam $cam, loopback $lb"
lbsys=/sys/class/video4linux/${lb#/dev/}

ff() { ffmpeg -hide_banner -nostdin -loglevel warning "$@"; }

# Before any writer: exclusive_caps=1 hides the capture capability.
if ff -f v4l2 -i "$lb" -frames:v 1 -f null - 2> early.log; then
    fail "reading $lb succeeded before any producer (exclusive_caps=1 should hide capture)"
fi
echo "reading before the producer fails, as expected: $(tail -n 1 early.log)"

t_prod=$(up)
# (ffmpeg itself, not the ff function: $! must be ffmpeg's process for kill below)
ffmpeg -hide_banner -nostdin -loglevel warning \
    -f v4l2 -input_format yuyv422 -video_size 640x480 -framerate 25 -i "$cam" \
    -fps_mode passthrough -pix_fmt yuyv422 -f v4l2 "$lb" \
    -fps_mode passthrough -f framemd5 sent.md5 2> producer.log &
producer=$!
# Stop the producer on every exit path (SIGTERM: ffmpeg finishes its files; a
# background job of a non-interactive shell ignores SIGINT).
trap 'kill -TERM "$producer" 2> /dev/null || true' EXIT

# Wait (up to 60 s) for the producer to set the loopback format. The sysfs
# attribute is empty until then; reading it needs no new process.
i=0
fmt=""
while [ "$i" -lt 600 ]; do
    read -r fmt < "$lbsys/format" || fmt=""
    [ -n "$fmt" ] && break
    kill -0 "$producer" 2> /dev/null || fail "producer exited early: $(tail -n 5 producer.log)"
    sleep 0.1
    i=$((i + 1))
done
[ -n "$fmt" ] || fail "the loopback device got no format within 60 s"
t_fmt=$(up)
echo "loopback format $fmt after $(awk -v a="$t_prod" -v b="$t_fmt" 'BEGIN { printf "%.1f", b - a }') s"

t_cons=$(up)
timeout 120 ffmpeg -hide_banner -nostdin -loglevel warning -f v4l2 -input_format yuyv422 -video_size 640x480 -i "$lb" \
    -fps_mode passthrough -frames:v "$frames" -f rawvideo recv.yuv 2> consumer.log \
    || fail "consumer failed (status $?): $(tail -n 5 consumer.log)"
t_done=$(up)
echo "consumer read $frames frames in $(awk -v a="$t_cons" -v b="$t_done" 'BEGIN { printf "%.1f", b - a }') s"

kill -TERM "$producer"
wait "$producer" || true # ffmpeg exits 255 when stopped by a signal
trap - EXIT
read -r fmt < "$lbsys/format" || fmt=""
echo "after the producer closed: format '$fmt'"
