#!/bin/sh
# Guest half of the consumer churn test (tests/live_vm.rs runs it through tests/vm/run.sh):
#   marionette run (idle motion, classic engine) writes /dev/video10 (YUYV 640x480) while 12
#   readers come and go, two at a time, each reading 8 frames: ffmpeg and v4l2-ctl, some asking
#   for another size or pixel format (1280x720, I420: the device answers with the writer's
#   format), some killed in the middle of streaming. A monitor (tests/vm/monitor.py: read(), an
#   MD5 and a wall-clock time stamp per frame) reads the whole time.
# Per reader i: reader-<i>.kind, reader-<i>.rc, reader-<i>.frames (frames it got), reader-<i>.log.
# Usage: tests/vm/run.sh OUT_DIR tests/vm/churn-guest.sh MARIONETTE_BIN [READERS]
set -u
bin=${1:?marionette binary}
readers=${2:-12}
cd "${VM_SHARE:?run through tests/vm/run.sh}"

frame_bytes=$((640 * 480 * 2))
now() { date +%s.%N; }
event() { echo "$(now) $*" >> events.txt; }
wait_until() {
    i=0
    while [ "$i" -lt "$2" ]; do
        eval "$1" && return 0
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

event start
"$bin" run --idle --engine classic --vcam /dev/video10 --stats > run.log 2>&1 &
pid=$!
wait_until '[ -n "$(cat /sys/class/video4linux/video10/format 2> /dev/null)" ] || ! kill -0 $pid 2> /dev/null' 1200
cat /sys/class/video4linux/video10/format > format.txt 2> /dev/null
python3 "$(dirname "$0")/monitor.py" /dev/video10 "$frame_bytes" monitor.txt 2> monitor.log &
monitor=$!
# The readers start once the monitor reads (Python starts slowly under emulation).
wait_until '[ "$(grep -vc "^#" monitor.txt 2> /dev/null)" -ge 5 ] 2> /dev/null' 600
event readers

# Frames in a raw YUYV file.
raw_frames() {
    size=$(stat -c %s "$1" 2> /dev/null || echo 0)
    echo $((size / frame_bytes))
}

# Reader $1, of kind ($1 mod 6).
read_once() {
    n=$1
    out=reader-$n
    case $((n % 6)) in
        0)
            echo "ffmpeg yuyv422 640x480" > "$out.kind"
            timeout 60 ffmpeg -hide_banner -nostdin -loglevel error -f v4l2 -input_format yuyv422 \
                -video_size 640x480 -i /dev/video10 -frames:v 8 -f rawvideo "$out.raw" 2> "$out.log"
            ;;
        1)
            echo "ffmpeg asking for 1280x720" > "$out.kind"
            timeout 60 ffmpeg -hide_banner -nostdin -loglevel error -f v4l2 -video_size 1280x720 \
                -i /dev/video10 -frames:v 8 -pix_fmt yuyv422 -s 640x480 -f rawvideo "$out.raw" \
                2> "$out.log"
            ;;
        2)
            echo "v4l2-ctl mmap" > "$out.kind"
            timeout 60 v4l2-ctl -d /dev/video10 --stream-mmap=3 --stream-count=8 \
                --stream-to="$out.raw" > "$out.log" 2>&1
            ;;
        3)
            echo "v4l2-ctl asking for 1280x720" > "$out.kind"
            timeout 60 v4l2-ctl -d /dev/video10 --set-fmt-video=width=1280,height=720 \
                --stream-mmap=3 --stream-count=8 --stream-to="$out.raw" > "$out.log" 2>&1
            ;;
        4)
            echo "ffmpeg asking for I420 1280x720" > "$out.kind"
            timeout 60 ffmpeg -hide_banner -nostdin -loglevel error -f v4l2 -input_format yuv420p \
                -video_size 1280x720 -i /dev/video10 -frames:v 8 -pix_fmt yuyv422 -s 640x480 \
                -f rawvideo "$out.raw" 2> "$out.log"
            ;;
        5)
            echo "ffmpeg killed while streaming" > "$out.kind"
            ffmpeg -hide_banner -nostdin -loglevel error -f v4l2 -input_format yuyv422 \
                -video_size 640x480 -i /dev/video10 -f rawvideo "$out.raw" 2> "$out.log" &
            k=$!
            wait_until "[ \$(raw_frames $out.raw) -ge 3 ]" 300
            kill -KILL "$k"
            wait "$k"
            ;;
    esac
    echo $? > "$out.rc"
    raw_frames "$out.raw" > "$out.frames"
    rm -f "$out.raw"
}

n=1
while [ "$n" -le "$readers" ]; do
    event "reader $n and $((n + 1))"
    read_once "$n" &
    a=$!
    if [ $((n + 1)) -le "$readers" ]; then
        read_once $((n + 1)) &
        b=$!
        wait "$b"
    fi
    wait "$a"
    n=$((n + 2))
done
event readers-done
cat /sys/class/video4linux/video10/format > format-end.txt 2> /dev/null
sleep 2

event stop
kill -INT "$pid"
wait "$pid"
echo $? > run.rc
sleep 1
kill -INT "$monitor" 2> /dev/null
wait "$monitor"
echo $? > monitor.rc
event end
