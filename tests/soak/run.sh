#!/usr/bin/env bash
# An hour of running (not part of `cargo test`): the live loop on the test pattern, once with the
# classic engine and once with the FOMM `tiny` fixture, side by side, each recording to a video on
# the host, for MINUTES minutes (default 60). Every 10 s it samples each process's resident
# memory, open file descriptors, threads, and from marionette's --stats output the frame rate,
# capture-to-output latency and frames made; at the end it checks that they stayed flat:
#
#   * RSS: the median of the last 6 samples at most 32 MiB above the median of the first 6 after
#     the warm-up (the first 2 minutes, or the first fifth of a shorter run);
#   * file descriptors and threads: the same number after the warm-up to the end (+-2);
#   * frame rate: the median of the last sixth at least 70 % of the first sixth's (after warm-up);
#   * latency p50: the median of the last sixth at most 1.5 x the first sixth's + 50 ms;
#   * the run ends cleanly on Ctrl-C and its recording holds every frame it made (the frames_out
#     of the last stats line, taken just before the threads stop, and at most 3 more).
#
#   tests/soak/run.sh [MINUTES] [OUT_DIR]
#
# OUT_DIR (default target/soak) gets samples-<engine>.csv, run-<engine>.log, the recordings and
# summary.txt. Uses target/release/marionette if it exists (MARIONETTE_BIN to choose), else builds
# the debug binary. Exit status 0 when every check passed.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
minutes=${1:-60}
out=${2:-$repo/target/soak}
case "$minutes" in
    '' | *[!0-9.]*) echo "run.sh: MINUTES must be a number" >&2; exit 2 ;;
esac
fixtures=${MARIONETTE_FIXTURES:-$repo/../shared/fixtures/fomm}
[ -f "$fixtures/tiny.yaml" ] || { echo "run.sh: no fixtures at $fixtures" >&2; exit 2; }
if [ -n "${MARIONETTE_BIN:-}" ]; then
    bin=$MARIONETTE_BIN
elif [ -x "${CARGO_TARGET_DIR:-$repo/target}/release/marionette" ]; then
    bin=${CARGO_TARGET_DIR:-$repo/target}/release/marionette
else
    (cd "$repo" && cargo build --quiet)
    bin=${CARGO_TARGET_DIR:-$repo/target}/debug/marionette
fi
rm -rf "$out"
mkdir -p "$out"
seconds=$(awk -v m="$minutes" 'BEGIN { printf "%d", m * 60 }')
echo "soak: $bin for $minutes min into $out" >&2

declare -A pids
start_one() {
    local name=$1
    shift
    "$bin" run --test-pattern --vcam none --record "$out/rec-$name.mp4" --stats "$@" \
        > "$out/stdout-$name.log" 2> "$out/run-$name.log" &
    pids[$name]=$!
    echo "t_s,rss_kib,fds,threads,fps,latency_p50_ms,latency_p95_ms,frames_out" > "$out/samples-$name.csv"
}
start_one classic --engine classic
start_one fomm-tiny --config "$fixtures/tiny.yaml" --checkpoint "$fixtures/tiny-legacy.pth.tar"
trap 'for p in "${pids[@]}"; do kill -INT "$p" 2> /dev/null || true; done' EXIT

# The last --stats line's value of a numeric field.
stat_field() {
    grep '^{' "$out/run-$1.log" | tail -n 1 | sed -n "s/.*\"$2\":\([0-9.eE+-]*\).*/\1/p"
}

t0=$(date +%s)
while :; do
    now=$(date +%s)
    t=$((now - t0))
    for name in "${!pids[@]}"; do
        pid=${pids[$name]}
        if ! kill -0 "$pid" 2> /dev/null; then
            echo "soak: $name exited early; its log:" >&2
            tail -n 20 "$out/run-$name.log" >&2
            exit 1
        fi
        rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")
        threads=$(awk '/^Threads:/ { print $2 }' "/proc/$pid/status")
        fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2> /dev/null | wc -l)
        echo "$t,$rss,$fds,$threads,$(stat_field "$name" fps),$(stat_field "$name" latency_ms_p50),$(stat_field "$name" latency_ms_p95),$(stat_field "$name" frames_out)" \
            >> "$out/samples-$name.csv"
    done
    [ "$t" -ge "$seconds" ] && break
    sleep 10
done

failed=0
for name in "${!pids[@]}"; do
    pid=${pids[$name]}
    kill -INT "$pid"
    if wait "$pid"; then rc=0; else rc=$?; fi
    frames=$(stat_field "$name" frames_out)
    recorded=$(ffprobe -v error -select_streams v:0 -show_entries stream=nb_frames -of csv=p=0 \
        "$out/rec-$name.mp4" 2> /dev/null || echo 0)
    echo "$name: exit $rc, $frames frames made, $recorded recorded" >> "$out/summary.txt"
    [ "$rc" = 0 ] || { echo "$name: FAIL exit status $rc" >> "$out/summary.txt"; failed=1; }
    # The last stats line is taken just before the threads stop, so the recording may hold a
    # frame or two more, never fewer.
    if [ "${recorded:-0}" -lt "${frames:-1}" ] || [ "${recorded:-0}" -gt $((${frames:-0} + 3)) ]; then
        echo "$name: FAIL the recording holds $recorded frames of $frames" >> "$out/summary.txt"
        failed=1
    fi
    awk -F, -v name="$name" -v total="$seconds" '
        function median(a, n,   i, j, t) {
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
            return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        }
        NR == 1 { next }
        { t[++n] = $1; rss[n] = $2; fds[n] = $3; thr[n] = $4; fps[n] = $5; lat[n] = $6 }
        END {
            warm = total >= 600 ? 120 : total / 5
            for (i = 1; i <= n && t[i] < warm; i++) {}
            first = i
            m = n - first + 1
            if (m < 12) { printf "%s: FAIL only %d samples after the warm-up\n", name, m; exit 1 }
            k = int(m / 6); if (k < 3) k = 3
            for (j = 0; j < 6; j++) { a[j + 1] = rss[first + j]; b[j + 1] = rss[n - j] }
            rss0 = median(a, 6); rss1 = median(b, 6)
            fmin = fmax = fds[first]; tmin = tmax = thr[first]
            for (i = first; i <= n; i++) {
                if (fds[i] < fmin) fmin = fds[i]; if (fds[i] > fmax) fmax = fds[i]
                if (thr[i] < tmin) tmin = thr[i]; if (thr[i] > tmax) tmax = thr[i]
            }
            for (j = 0; j < k; j++) { c[j + 1] = fps[first + j]; d[j + 1] = fps[n - j]; e[j + 1] = lat[first + j]; f[j + 1] = lat[n - j] }
            fps0 = median(c, k); fps1 = median(d, k); lat0 = median(e, k); lat1 = median(f, k)
            printf "%s: %d samples after %d s of warm-up; RSS %.1f -> %.1f MiB; fds %d..%d; threads %d..%d; fps %.2f -> %.2f; latency p50 %.0f -> %.0f ms\n",
                name, m, warm, rss0 / 1024, rss1 / 1024, fmin, fmax, tmin, tmax, fps0, fps1, lat0, lat1
            bad = 0
            if (rss1 - rss0 > 32 * 1024) { printf "%s: FAIL RSS grew by %.1f MiB (bound 32)\n", name, (rss1 - rss0) / 1024; bad = 1 }
            if (fmax - fmin > 2) { printf "%s: FAIL open file descriptors varied %d..%d (bound +-2)\n", name, fmin, fmax; bad = 1 }
            if (tmax - tmin > 2) { printf "%s: FAIL threads varied %d..%d (bound +-2)\n", name, tmin, tmax; bad = 1 }
            if (fps1 < 0.7 * fps0) { printf "%s: FAIL fps fell from %.2f to %.2f (bound 70 %%)\n", name, fps0, fps1; bad = 1 }
            if (lat1 > 1.5 * lat0 + 50) { printf "%s: FAIL latency rose from %.0f to %.0f ms\n", name, lat0, lat1; bad = 1 }
            exit bad
        }' "$out/samples-$name.csv" >> "$out/summary.txt" || failed=1
done
trap - EXIT
cat "$out/summary.txt"
if [ "$failed" = 0 ]; then echo "soak: PASS" | tee -a "$out/summary.txt"; else echo "soak: FAIL" | tee -a "$out/summary.txt"; exit 1; fi
