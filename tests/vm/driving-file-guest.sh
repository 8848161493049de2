#!/bin/sh
# Guest half of the slow-processor test (tests/live_vm.rs runs it through tests/vm/run.sh): the
# VM's emulated processor is many times slower than ours. A driving video (made on the host) ->
# marionette run (the tiny FOMM fixture, default framing and keyframes) -> v4l2loopback
# /dev/video10, read back by ffmpeg (an MD5 and a wall-clock time stamp per frame) for 600
# frames once it animates; marionette must keep writing at the camera's rate and the portrait
# must move. Then `marionette verify --camera` reads the mark off /dev/video10, and finds none on
# the webcam.
# Usage: tests/vm/run.sh OUT_DIR tests/vm/driving-file-guest.sh MARIONETTE_BIN FIXTURES_DIR VIDEO
set -u
bin=${1:?marionette binary}
fixtures=${2:?fixtures dir}
video=${3:?driving video}
cd "${VM_SHARE:?run through tests/vm/run.sh}"

now() { date +%s.%N; }
event() { echo "$(now) $*" >> events.txt; }

event start
"$bin" run --driving-file "$video" --checkpoint "$fixtures/tiny-zip.pth.tar" \
    --config "$fixtures/tiny.yaml" --vcam /dev/video10 --stats > run.log 2>&1 &
pid=$!
i=0
while [ "$i" -lt 1200 ] && kill -0 "$pid" 2> /dev/null; do
    [ -n "$(cat /sys/class/video4linux/video10/format 2> /dev/null)" ] && break
    sleep 0.1
    i=$((i + 1))
done
cat /sys/class/video4linux/video10/format > format.txt 2> /dev/null
event writing
# Until the first animated frame (the stats, every 3 s, count them), at most a minute.
i=0
while [ "$i" -lt 600 ] && kill -0 "$pid" 2> /dev/null; do
    grep -q '"frames_out":[1-9]' run.log 2> /dev/null && break
    sleep 0.1
    i=$((i + 1))
done
event animated
timeout 120 ffmpeg -hide_banner -nostdin -loglevel error -f v4l2 -ts abs -input_format yuyv422 \
    -video_size 640x480 -i /dev/video10 -copyts -fps_mode passthrough -frames:v 600 \
    -f framemd5 recv.framemd5 2> recv.log
echo $? > recv.rc
event read
# The mark, read back by marionette's own verifier from the virtual camera as a call app would
# read it; and from the webcam (vivid's test pattern), which is not marionette's and must not
# look marked.
timeout 300 "$bin" verify --camera /dev/video10 --seconds 2 --json > verify-vcam.json \
    2> verify-vcam.log
echo $? > verify-vcam.rc
event verified
kill -INT "$pid" 2> /dev/null
wait "$pid"
echo $? > run.rc
event stopped
timeout 300 "$bin" verify --camera /dev/video0 --seconds 2 --json > verify-webcam.json \
    2> verify-webcam.log
echo $? > verify-webcam.rc
