#!/usr/bin/env bash
# Installs what marionette needs to build and run on Debian/Ubuntu. Idempotent: safe to re-run.
#   * FFmpeg (ffmpeg, ffprobe): reading and writing videos.
#   * pkg-config, clang's libclang (bindgen for the V4L2 bindings), a C compiler, nasm (SIMD JPEG).
#   * A Rust toolchain >= 1.95 through rustup when cargo is missing or too old.
#   * The window's run-time libraries: X11/Wayland client libraries and keyboard maps (winit),
#     the Vulkan loader, and Mesa's Vulkan and GL drivers (software rendering where there is no
#     GPU driver).
# With --tests, also what the tests need: Xvfb, xdotool and ImageMagick for the real-window test,
# and the QEMU test VM of tests/vm (qemu, a Debian kernel with the vivid and v4l2loopback
# drivers; tests/vm/build.sh, cached in target/vm).
set -euo pipefail

tests=0
for arg in "$@"; do
    case "$arg" in
        --tests) tests=1 ;;
        *) echo "setup: unknown option $arg (only --tests)" >&2; exit 2 ;;
    esac
done

need=()
for cmd_pkg in ffmpeg:ffmpeg ffprobe:ffmpeg pkg-config:pkg-config cc:gcc nasm:nasm; do
    cmd=${cmd_pkg%%:*}; pkg=${cmd_pkg#*:}
    command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
if ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 && ! ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1; then
    need+=(libclang-dev)
fi
command -v curl >/dev/null 2>&1 || need+=(curl ca-certificates)
window_pkgs=(libx11-6 libx11-xcb1 libxcursor1 libxrandr2 libxi6 libxkbcommon0 libxkbcommon-x11-0
    libwayland-client0 libwayland-cursor0 libwayland-egl1 libegl1 libgl1-mesa-dri libvulkan1
    mesa-vulkan-drivers)
test_pkgs=(xvfb xdotool imagemagick)
pkgs=("${window_pkgs[@]}")
[ "$tests" = 1 ] && pkgs+=("${test_pkgs[@]}")
for pkg in "${pkgs[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done

if [ ${#need[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "setup: installing ${need[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${need[@]}" | sort -u) >/dev/null
fi

rust_ok() {
    command -v cargo >/dev/null 2>&1 || return 1
    local v
    v=$(rustc --version 2>/dev/null | awk '{print $2}')
    [ "$(printf '%s\n1.95.0\n' "$v" | sort -V | head -1)" = "1.95.0" ]
}
if ! rust_ok; then
    [ -x "$HOME/.cargo/bin/rustup" ] || curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    "$HOME/.cargo/bin/rustup" toolchain install stable --profile minimal
    echo "setup: Rust installed in ~/.cargo/bin"
fi
if [ "$tests" = 1 ]; then
    repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    if [ "$(id -u)" -eq 0 ]; then
        bash "$repo/tests/vm/build.sh"
    else
        # apt needs root; the cache stays the user's.
        sudo env VM_CACHE="$repo/target/vm" bash "$repo/tests/vm/build.sh"
        sudo chown -R "$(id -u):$(id -g)" "$repo/target"
    fi
fi
echo "setup: ok"
