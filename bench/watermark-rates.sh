#!/usr/bin/env bash
# How often `marionette verify` finds the invisible mark in two-second clips of marionette's
# output after what a call does to them, and how often it calls an unmarked clip marked.
#
#   bench/watermark-rates.sh [N [M]]    N marked and M unmarked clips (default 50 each; M = N)
#
# Marked: `run` (classic engine, idle motion or the test pattern, each bundled portrait), 60
# frames composed as the virtual camera sends them (640x480), then one of: as is, 320x240,
# 1280x720, 5 % cropped per side, brightness and contrast +-10 %, mirrored; encoded with H.264 or
# VP8 at 300 kbit/s. Unmarked: FFmpeg's synthetic sources (test cards, fractals, cellular
# automata, noise) and the bundled portraits zooming and panning, encoded the same way.
# Needs a release build (MARIONETTE=path to use another binary) and ffmpeg.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${MARIONETTE:-target/release/marionette}
n=${1:-50}
m=${2:-$n}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
avatars=(assets/avatars/eileen-collins.png assets/avatars/grace-hopper.jpg)
transforms=("null" "scale=320:240" "scale=1280:720" "crop=iw*0.9:ih*0.9,scale=640:480"
    "eq=brightness=0.1:contrast=1.1" "eq=brightness=-0.1:contrast=0.9" "hflip")
codecs=(libx264 libvpx)

# verify's JSON line -> "marked z"
judge() { "$bin" verify --json --seconds 2 "$1" | sed -E 's/.*"marked":([a-z]+).*"z":([-0-9.e]+).*/\1 \2/'; }

encode() { # input-args... -- filter codec out
    local args=() f c o
    while [ "$1" != -- ]; do args+=("$1"); shift; done
    f=$2 c=$3 o=$4
    ffmpeg -hide_banner -loglevel error -y "${args[@]}" -frames:v 60 -vf "$f" -c:v "$c" -b:v 300k \
        -pix_fmt yuv420p "$o"
}

found=0 least_z=1e9
for i in $(seq 1 "$n"); do
    avatar=${avatars[$((i % 2))]}
    source=--idle
    [ $((i % 4)) -ge 2 ] && source=--test-pattern
    MARIONETTE_MODEL_DIR=$work/none "$bin" run --engine classic $source --avatar "$avatar" \
        --frames 60 --vcam none --record "$work/m$i/" > /dev/null 2>&1
    t=${transforms[$((i % ${#transforms[@]}))]}
    c=${codecs[$(((i / ${#transforms[@]}) % 2))]}
    ext=mp4; [ "$c" = libvpx ] && ext=webm
    encode -framerate 30 -i "$work/m$i/frame_%06d.png" -- \
        "scale=480:480,pad=640:480:80:0:gray,$t" "$c" "$work/m$i.$ext"
    read -r marked z < <(judge "$work/m$i.$ext")
    [ "$marked" = true ] && found=$((found + 1))
    least_z=$(awk -v a="$least_z" -v b="$z" 'BEGIN { print (b < a) ? b : a }')
    echo "marked clip $i ($source, $(basename "$avatar"), $t, $c): marked=$marked z=$z"
    rm -rf "$work/m$i" "$work/m$i.$ext"
done

sources=("testsrc2=size=640x480:rate=30" "smptehdbars=size=640x480:rate=30"
    "mandelbrot=size=640x480:rate=30" "life=size=640x480:rate=30:mold=10:ratio=0.1"
    "cellauto=size=640x480:rate=30" "gradients=size=640x480:rate=30"
    "nullsrc=size=640x480:rate=30,geq=lum='random(1)*255':cb=128:cr=128")
flagged=0 most_z=-1e9
for i in $(seq 1 "$m"); do
    t=${transforms[$((i % ${#transforms[@]}))]}
    c=${codecs[$((i % 2))]}
    ext=mp4; [ "$c" = libvpx ] && ext=webm
    out=$work/u$i.$ext
    if [ $((i % 3)) = 0 ]; then
        avatar=${avatars[$((i % 2))]}
        what="$(basename "$avatar") zooming"
        encode -loop 1 -framerate 30 -i "$avatar" -- \
            "scale=640:-2,zoompan=z='1+0.002*on+0.001*$i':x='iw/2-(iw/zoom/2)+$i':y='ih/2-(ih/zoom/2)':d=1:s=640x480:fps=30,$t" \
            "$c" "$out"
    else
        src=${sources[$((i % ${#sources[@]}))]}
        what=${src%%=*}
        encode -f lavfi -i "$src" -ss "0.$i" -- "$t" "$c" "$out"
    fi
    read -r marked z < <(judge "$out")
    [ "$marked" = true ] && flagged=$((flagged + 1))
    most_z=$(awk -v a="$most_z" -v b="$z" 'BEGIN { print (b > a) ? b : a }')
    echo "unmarked clip $i ($what, $t, $c): marked=$marked z=$z"
    rm -f "$out"
done
echo "marked clips found: $found of $n (least z $least_z); unmarked clips called marked: $flagged of $m (highest z $most_z; the threshold is z = 7.0)"
