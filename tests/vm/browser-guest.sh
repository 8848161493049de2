#!/bin/sh
# Guest half of the browser test (tests/live_vm.rs runs it through tests/vm/run.sh): headless
# Chromium (Debian's package, from the host's root) opens tests/vm/browser/camera.html, which
# lists the cameras, opens the one labelled "marionette" with getUserMedia and prints block
# statistics of every frame it draws into a canvas. marionette runs idle motion (classic engine)
# into /dev/video10 as YUYV 640x480, recording PNGs; when the page has read its frames, marionette
# is restarted as I420 640x480 and the same page (one browser start) reads again.
# Usage: tests/vm/run.sh OUT_DIR tests/vm/browser-guest.sh MARIONETTE_BIN PAGE [FRAMES]
set -u
bin=${1:?marionette binary}
page=${2:?camera.html}
frames=${3:-40}
cd "${VM_SHARE:?run through tests/vm/run.sh}"

now() { date +%s.%N; }
event() { echo "$(now) $*" >> events.txt; }
wait_until() {
    i=0
    while [ "$i" -lt "$2" ]; do
        eval "$1" && return 0
        sleep 0.2
        i=$((i + 1))
    done
    return 1
}
# Starts marionette writing format $1, recording into rec-$1.
start_marionette() {
    "$bin" run --idle --engine classic --vcam /dev/video10 --vcam-format "$1" --vcam-size 640x480 \
        --record "$VM_SHARE/rec-$1" --stats > "run-$1.log" 2>&1 &
    pid=$!
    wait_until '[ -n "$(cat /sys/class/video4linux/video10/format 2> /dev/null)" ] || ! kill -0 $pid 2> /dev/null' 1500
    cat /sys/class/video4linux/video10/format > "format-$1.txt" 2> /dev/null
    event "writing $1"
}
stop_marionette() {
    kill -INT "$pid"
    wait "$pid"
    echo $? > "run-$1.rc"
    event "stopped $1"
}

export HOME=/tmp/browser-home
mkdir -p "$HOME"
event start
start_marionette yuyv
# Chromium in the VM: no sandbox (no user namespaces for it there), no GPU, the camera prompt
# answered yes, nothing fetched from the network. One process: under software emulation a
# child process that has not connected within 15 s ends itself, and the page then never loads.
chromium --headless --no-sandbox --disable-gpu --single-process --no-zygote \
    --use-fake-ui-for-media-stream --disable-extensions \
    --disable-features=OptimizationHints,OnDeviceModelService,Translate,MediaRouter,DialMediaRouteProvider \
    --disable-background-networking --disable-component-update --disable-sync \
    --disable-default-apps --no-first-run --no-default-browser-check --mute-audio \
    --autoplay-policy=no-user-gesture-required --user-data-dir=/tmp/browser-profile \
    --enable-logging=stderr --v=0 "file://$page?frames=$frames&phases=2" > chromium.log 2>&1 &
browser=$!
event "browser started"
wait_until 'grep -q "MARIONETTE \(phase-done 0\|error\)" chromium.log || ! kill -0 $browser 2> /dev/null' 9000
event "phase 0 over"
stop_marionette yuyv
# The page must see the camera go away before it comes back; a quick restart would otherwise
# hide the gap between its polls of the device list.
wait_until 'grep -q "MARIONETTE \(gone\|error\)" chromium.log || ! kill -0 $browser 2> /dev/null' 3000
event "page saw it gone"
start_marionette i420
wait_until 'grep -q "MARIONETTE \(done\|error\)" chromium.log || ! kill -0 $browser 2> /dev/null' 9000
event "phase 1 over"
stop_marionette i420
kill "$browser" 2> /dev/null
wait "$browser"
event end
grep 'MARIONETTE ' chromium.log | sed 's/.*MARIONETTE /MARIONETTE /; s/", source: .*//' > page.log
