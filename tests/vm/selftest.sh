#!/usr/bin/env bash
# End-to-end check of the VM harness with ffmpeg only:
#   vivid webcam -> ffmpeg -> v4l2loopback (/dev/video10) -> second ffmpeg -> files
#
#   tests/vm/selftest.sh [output-folder]
#
# Builds the VM (tests/vm/build.sh; skip with VM_SKIP_BUILD=1), runs
# tests/vm/selftest-guest.sh inside it, then checks on the host that
#   * the consumer got exactly SELFTEST_FRAMES frames of 640x480 YUYV;
#   * every received frame is byte-identical to a frame the producer wrote, and
#     they arrive in the producer's order without repeats (MD5 per frame);
#   * no frame is blank: luma and chroma each span at least 64 code values
#     (vivid's colour bars span ~16..235).
# Exit status 0 on success. Output folder default: $VM_CACHE/selftest (emptied).
# Environment: SELFTEST_FRAMES (default 30), plus everything build.sh/run.sh read.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
export VM_CACHE=${VM_CACHE:-$repo/target/vm}
frames=${SELFTEST_FRAMES:-30}
out=${1:-$VM_CACHE/selftest}
# Frame geometry the guest script uses (YUYV: 2 bytes per pixel).
width=640
height=480
frame_bytes=$((width * height * 2))

say() { echo "selftest: $*" >&2; }
fail() {
    echo "selftest: FAIL: $*" >&2
    exit 1
}
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

case "$frames" in
    '' | *[!0-9]* | 0) fail "SELFTEST_FRAMES must be a positive whole number" ;;
esac

t0=$(date +%s.%N)
if [ "${VM_SKIP_BUILD:-0}" != 1 ]; then
    "$here/build.sh"
fi
t_build=$(elapsed "$t0")

mkdir -p "$out"
out=$(cd "$out" && pwd -P)
rm -f "$out"/*.yuv "$out"/*.md5 "$out"/*.log "$out"/*.txt

t1=$(date +%s.%N)
set +e
VM_TIMEOUT=${VM_TIMEOUT:-300} "$here/run.sh" "$out" sh "$here/selftest-guest.sh" "$frames"
rc=$?
set -e
t_run=$(elapsed "$t1")
[ "$rc" = 0 ] || fail "the guest part failed (status $rc); logs in $out"

# --- host checks ----------------------------------------------------------------------
for f in recv.yuv sent.md5; do
    [ -s "$out/$f" ] || fail "$out/$f missing or empty"
done
size=$(stat -c %s "$out/recv.yuv")
[ "$size" = $((frames * frame_bytes)) ] \
    || fail "recv.yuv has $size bytes, expected $frames frames x $frame_bytes"
# MD5 of each received frame, computed here from the file the consumer wrote.
ffmpeg -hide_banner -nostdin -loglevel error -f rawvideo -pix_fmt yuyv422 -s "${width}x${height}" \
    -i "$out/recv.yuv" -f framemd5 "$out/recv.md5" || fail "ffmpeg framemd5 on recv.yuv failed"

# framemd5 lines: "stream, dts, pts, duration, size, md5"; '#' lines are headers.
awk -F', *' '!/^#/ { print $6 }' "$out/sent.md5" > "$out/sent.txt"
awk -F', *' '!/^#/ { print $6 }' "$out/recv.md5" > "$out/recv.txt"
n_recv=$(wc -l < "$out/recv.txt")
n_sent=$(wc -l < "$out/sent.txt")
[ "$n_recv" = "$frames" ] || fail "framemd5 found $n_recv frames in recv.yuv, expected $frames"
bad_sizes=$(awk -F', *' -v fb="$frame_bytes" '!/^#/ && $5 != fb' "$out/sent.md5" | wc -l)
[ "$bad_sizes" = 0 ] || fail "$bad_sizes frames the producer wrote are not $frame_bytes bytes"

# Position of each received frame among the sent ones: must exist and increase.
awk 'NR == FNR { if (!($1 in pos)) pos[$1] = FNR; next }
     { if (!($1 in pos)) { print "missing " FNR; next } print pos[$1] }' \
    "$out/sent.txt" "$out/recv.txt" > "$out/positions.txt"
if grep -q '^missing' "$out/positions.txt"; then
    fail "received frame(s) $(grep '^missing' "$out/positions.txt" | cut -d' ' -f2 | tr '\n' ' ')not among the $n_sent frames the producer wrote (content changed in transit)"
fi
order=$(awk 'NR > 1 && $1 <= prev { bad++ } NR > 1 && $1 > prev + 1 { gaps += $1 - prev - 1 }
             { prev = $1 } END { printf "%d %d", bad + 0, gaps + 0 }' "$out/positions.txt")
read -r not_increasing skipped <<< "$order"
[ "$not_increasing" = 0 ] || fail "$not_increasing received frames repeat or go back in the producer's order"
first=$(head -n 1 "$out/positions.txt")
last=$(tail -n 1 "$out/positions.txt")
distinct=$(sort -u "$out/recv.txt" | wc -l)

# Not blank: per-frame luma/chroma ranges from ffmpeg's signalstats filter.
ffmpeg -hide_banner -nostdin -loglevel error -f rawvideo -pix_fmt yuyv422 -s "${width}x${height}" \
    -i "$out/recv.yuv" -vf "signalstats,metadata=mode=print:file=$out/stats.txt" -f null - \
    || fail "ffmpeg signalstats on recv.yuv failed"
blank=$(awk -F= '
    /lavfi.signalstats.YMIN=/ { ymin = $2 } /lavfi.signalstats.YMAX=/ { ymax = $2 }
    /lavfi.signalstats.UMIN=/ { umin = $2 } /lavfi.signalstats.UMAX=/ { umax = $2 }
    /lavfi.signalstats.VMIN=/ { vmin = $2 }
    /lavfi.signalstats.VMAX=/ { vmax = $2; n++
        if (ymax - ymin < 64 || umax - umin < 64 || vmax - vmin < 64) bad++ }
    END { printf "%d %d", n + 0, bad + 0 }' "$out/stats.txt")
read -r n_stats n_blank <<< "$blank"
[ "$n_stats" = "$frames" ] || fail "signalstats measured $n_stats frames, expected $frames"
[ "$n_blank" = 0 ] || fail "$n_blank of $frames received frames look blank (value range < 64)"

say "PASS: $frames frames of ${width}x${height} YUYV through v4l2loopback, byte-identical to" \
    "producer frames $first..$last of $n_sent ($skipped skipped in between, $distinct distinct)," \
    "none blank"
say "time: build ${t_build} s, VM run ${t_run} s, total $(elapsed "$t0") s"
