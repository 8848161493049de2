#!/usr/bin/env bash
# Installs what marionette needs to build and run on Debian/Ubuntu. Idempotent: safe to re-run.
#
# Everything is asked for by Debian package name, never guessed from files that happen to be on
# the machine (a `libclang-cpp14` install once made an earlier version of this script skip
# `libclang-dev`, and bindgen then failed with "Unable to find libclang"):
#   * ffmpeg (ffmpeg, ffprobe): reading and writing videos.
#   * build-essential (cc), pkg-config, libclang-dev (bindgen for the V4L2 bindings loads
#     libclang.so from it), nasm (SIMD JPEG), curl and ca-certificates (rustup).
#   * A Rust toolchain >= 1.95 through rustup when cargo is missing or too old.
#   * The window's run-time libraries: X11/Wayland client libraries and keyboard maps (winit),
#     the Vulkan loader, and Mesa's Vulkan and GL drivers (software rendering where there is no
#     GPU driver).
# With --tests, also what the tests need: Xvfb, xdotool and ImageMagick for the real-window test,
# mmdebstrap for the fresh-machine check (packaging/check-fresh.sh), Chromium for the browser test
# (it runs inside the test VM from the host's files), and the QEMU test VM of
# tests/vm (qemu, a Debian kernel with the vivid and v4l2loopback drivers; tests/vm/build.sh,
# cached in target/vm).
set -euo pipefail

tests=0
for arg in "$@"; do
    case "$arg" in
        --tests) tests=1 ;;
        *) echo "setup: unknown option $arg (only --tests)" >&2; exit 2 ;;
    esac
done

build_pkgs=(ffmpeg build-essential pkg-config libclang-dev nasm curl ca-certificates)
window_pkgs=(libx11-6 libx11-xcb1 libxcursor1 libxrandr2 libxi6 libxkbcommon0 libxkbcommon-x11-0
    libwayland-client0 libwayland-cursor0 libwayland-egl1 libegl1 libgl1-mesa-dri libvulkan1
    mesa-vulkan-drivers)
# python3: the VM tests' read() witness (tests/vm/monitor.py) runs in the guest, which uses this root.
# iproute2: the network namespaces of the remote-rendering tests (delay and loss).
test_pkgs=(xvfb xdotool imagemagick mmdebstrap chromium python3 iproute2)
pkgs=("${build_pkgs[@]}" "${window_pkgs[@]}")
[ "$tests" = 1 ] && pkgs+=("${test_pkgs[@]}")

# Which of the named packages dpkg does not list as installed (asking apt for an installed
# package is harmless, but needs root and a package-list refresh; this keeps re-runs instant).
need=()
for pkg in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done

if [ ${#need[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "setup: installing ${need[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# bindgen (v4l2-sys-mit) loads libclang.so or libclang-<N>.so; check that exact file, so a broken
# install is named here and not as a panic deep in the build. libclang-cpp.so (libclang-cpp*-dev)
# is a different library and does not count: the version patterns start with a digit.
if ! compgen -G '/usr/lib/llvm-*/lib/libclang.so' >/dev/null && ! compgen -G '/usr/lib/llvm-*/lib/libclang-[0-9]*.so' >/dev/null \
    && ! compgen -G '/usr/lib/*-linux-gnu/libclang-[0-9]*.so' >/dev/null; then
    echo "setup: libclang-dev is installed but no libclang.so was found under /usr/lib/llvm-*/lib;" >&2
    echo "setup: reinstall it (sudo apt-get install --reinstall libclang-dev) or set LIBCLANG_PATH" >&2
    exit 1
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
