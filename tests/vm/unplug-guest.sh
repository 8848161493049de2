#!/bin/sh
# Guest half of the camera unplug test (tests/live_vm.rs runs it through tests/vm/run.sh, with
# vivid's error-injection controls enabled):
#   vivid webcam -> marionette run (classic engine) -> v4l2loopback /dev/video10, read back by
#   ffmpeg (an MD5 and a wall-clock time stamp per frame) the whole time; once marionette has
#   calibrated, the webcam is unplugged (vivid's "disconnect" control, then rmmod vivid once
#   marionette has let go of it), stays away, and is plugged back (insmod vivid); marionette must
#   keep writing throughout, say once that the camera is lost, reopen it and recalibrate.
# Events go to events.txt as "<unix time> <event>". The host checks everything.
# Usage: tests/vm/run.sh OUT_DIR tests/vm/unplug-guest.sh MARIONETTE_BIN [AWAY_SECONDS]
set -u
bin=${1:?marionette binary}
away=${2:-6}
cd "${VM_SHARE:?run through tests/vm/run.sh}"

now() { date +%s.%N; }
event() { echo "$(now) $*" >> events.txt; }
# The value of "calibrations" in the last stats line of run.log.
calibrations() {
    sed -n 's/.*"calibrations":\([0-9]*\).*/\1/p' run.log | tail -n 1
}
# Waits up to $2 tenths of a second for the shell condition $1.
wait_until() {
    i=0
    while [ "$i" -lt "$2" ]; do
        eval "$1" && return 0
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

vivid=$(find /run/vm/modules -name 'vivid.ko*' | head -n 1)
read -r vivid_opts < /run/vm/vivid-opts
echo "vivid module: $vivid ($vivid_opts)" > guest.log

# vivid's colour squares (test pattern 4), moving right: corners for the classic engine to
# calibrate on at once. Its default colour bars have vertical edges only, and a calibration on
# them waits for enough corners in the on-screen text (a minute to three under emulation).
pattern() {
    v4l2-ctl -d /dev/video0 --set-ctrl test_pattern=4,horizontal_movement=6 >> guest.log 2>&1
}
pattern
v4l2-ctl -d /dev/video0 --list-ctrls-menus > ctrls.txt 2>&1

event start
"$bin" run --camera 0 --engine classic --vcam /dev/video10 --stats > run.log 2>&1 &
pid=$!
wait_until '[ -n "$(cat /sys/class/video4linux/video10/format 2> /dev/null)" ] || ! kill -0 $pid 2> /dev/null' 1200
cat /sys/class/video4linux/video10/format > format.txt 2> /dev/null
ffmpeg -hide_banner -nostdin -loglevel error -f v4l2 -ts abs -input_format yuyv422 \
    -video_size 640x480 -i /dev/video10 -copyts -fps_mode passthrough -f framemd5 recv.framemd5 \
    2> recv.log &
reader=$!
event reading

# Calibrated on the webcam, then a few seconds of animation.
wait_until '[ "$(calibrations)" -ge 1 ] 2> /dev/null' 1800 || echo "not calibrated" >> guest.log
event calibrated
sleep 4

# Unplugged: the device node goes (as devtmpfs removes an unplugged camera's node at once, which
# vivid's control does not do), vivid's disconnect control makes the open file fail as a USB
# camera's does (reads give ENODEV), and the driver goes once marionette has closed the device
# (rmmod refuses while it is open).
event unplug
mv /dev/video0 /dev/video0.unplugged
v4l2-ctl -d /dev/video0.unplugged --set-ctrl disconnect=1 >> guest.log 2>&1
echo $? > disconnect.rc
wait_until 'rmmod vivid 2>> rmmod.log' 600 && event removed
rm -f /dev/video0.unplugged
[ -e /dev/video0 ] && echo "/dev/video0 still there after rmmod" >> guest.log
sleep "$away"

event plug
# shellcheck disable=SC2086 # options are a word list
insmod "$vivid" $vivid_opts >> guest.log 2>&1
echo $? > insmod.rc
wait_until '[ -e /dev/video0 ]' 100
pattern

# Reopened (its back-off is at most 4 s) and recalibrated.
wait_until '[ "$(calibrations)" -ge 2 ] 2> /dev/null' 1800 || echo "not recalibrated" >> guest.log
event recalibrated
sleep 4

event stop
kill -INT "$pid"
wait "$pid"
echo $? > run.rc
sleep 1
kill -INT "$reader" 2> /dev/null
wait "$reader"
echo $? > recv.rc
event end
