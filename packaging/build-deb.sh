#!/usr/bin/env bash
# Builds the Debian package target/debian/marionette_<version>_<arch>.deb with dpkg-deb:
#
#   /usr/bin/marionette                         the release binary (CPU build), stripped
#   /usr/bin/marionette-setup-virtual-camera    packaging/setup-virtual-camera.sh
#   /usr/share/marionette/avatars/              the bundled portraits (the binary finds them here)
#   /usr/share/marionette/configs/              the published model configs (YAML, for --config)
#   /usr/share/marionette/models/               empty: FOMM weights put there serve every user
#   /usr/share/applications/marionette.desktop  the application-menu entry, and its icon
#   /usr/share/icons/hicolor/scalable/apps/marionette.svg
#   /usr/share/man/man1/marionette*.1.gz        man pages, and bash/zsh/fish completions, both
#                                               generated from the command line's definitions
#   /usr/share/doc/marionette/                  copyright, README, models.md (getting the weights)
#
# dpkg-deb rather than cargo-deb: dpkg-deb is part of every Debian system (cargo-deb would have to
# be installed and compiled first on a fresh machine), and dpkg-shlibdeps (dpkg-dev, pulled in by
# build-essential) works out the linked libraries' packages; the libraries loaded at run time
# (window, GPU) and ffmpeg are listed below by hand.
#
#   bash packaging/build-deb.sh             # cargo build --release --locked, then the package
#   bash packaging/build-deb.sh --no-build  # package the existing target/release/marionette
#
# Needs: cargo (unless --no-build), dpkg-deb, dpkg-shlibdeps (dpkg-dev), strip (binutils), gzip:
# all there after `bash packaging/setup.sh`.
set -euo pipefail

build=1
for arg in "$@"; do
    case "$arg" in
        --no-build) build=0 ;;
        -h | --help) sed -n '2,23p' "$0"; exit 0 ;;
        *) echo "build-deb: unknown option $arg (--no-build)" >&2; exit 2 ;;
    esac
done

say() { echo "build-deb: $*" >&2; }
die() { echo "build-deb: ERROR: $*" >&2; exit 1; }

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
target=${CARGO_TARGET_DIR:-$repo/target}
case "$target" in /*) ;; *) target=$repo/$target ;; esac
for tool in dpkg-deb dpkg-shlibdeps strip gzip; do
    command -v "$tool" > /dev/null || die "$tool not found: run packaging/setup.sh (build-essential)"
done

# The [package] version of Cargo.toml.
version=$(awk '/^\[/ { in_pkg = ($0 == "[package]") } in_pkg && /^version *=/ { gsub(/.*= *"|".*/, ""); print; exit }' Cargo.toml)
[ -n "$version" ] || die "no version in Cargo.toml's [package]"
arch=$(dpkg --print-architecture)

if [ "$build" = 1 ]; then
    cargo=$(command -v cargo || echo "$HOME/.cargo/bin/cargo")
    [ -x "$cargo" ] || die "cargo not found: run packaging/setup.sh"
    say "cargo build --release --locked"
    "$cargo" build --release --locked
fi
bin=$target/release/marionette
[ -x "$bin" ] || die "$bin missing: build it (cargo build --release) or drop --no-build"

out=$target/debian
stage=$out/stage
rm -rf "$stage"
mkdir -p "$stage/DEBIAN"

# Files. install -D makes the folders; modes are set explicitly (the checkout's umask varies).
install -Dm755 "$bin" "$stage/usr/bin/marionette"
strip --strip-unneeded "$stage/usr/bin/marionette"
install -Dm755 packaging/setup-virtual-camera.sh "$stage/usr/bin/marionette-setup-virtual-camera"
for f in assets/avatars/*; do
    install -Dm644 "$f" "$stage/usr/share/marionette/avatars/$(basename "$f")"
done
for f in crates/fomm/configs/*.yaml; do
    install -Dm644 "$f" "$stage/usr/share/marionette/configs/$(basename "$f")"
done
install -d -m755 "$stage/usr/share/marionette/models"
install -Dm644 packaging/deb/marionette.desktop "$stage/usr/share/applications/marionette.desktop"
install -Dm644 packaging/deb/marionette.svg "$stage/usr/share/icons/hicolor/scalable/apps/marionette.svg"

gen=$out/generated
rm -rf "$gen"
"$stage/usr/bin/marionette" generate man "$gen/man"
"$stage/usr/bin/marionette" generate completions "$gen/completions"
for f in "$gen"/man/*.1; do
    install -Dm644 "$f" "$stage/usr/share/man/man1/$(basename "$f")"
    gzip -9n "$stage/usr/share/man/man1/$(basename "$f")"
done
install -Dm644 "$gen/completions/marionette.bash" "$stage/usr/share/bash-completion/completions/marionette"
install -Dm644 "$gen/completions/_marionette" "$stage/usr/share/zsh/vendor-completions/_marionette"
install -Dm644 "$gen/completions/marionette.fish" "$stage/usr/share/fish/vendor_completions.d/marionette.fish"

doc=$stage/usr/share/doc/marionette
install -Dm644 README.md "$doc/README.md"
gzip -9n "$doc/README.md"
install -Dm644 models/README.md "$doc/models.md"
cat > "$doc/copyright" << 'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: marionette

Files: *
Copyright: the marionette developers
License: MIT or Apache-2.0
 As declared in the source's Cargo.toml. On Debian systems the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.

Files: usr/share/marionette/avatars/*
Copyright: none: works of the US federal government
License: public-domain
 NASA's official portrait of Eileen Collins and the US Navy's photograph of Grace Hopper;
 see /usr/share/marionette/avatars/README.md.

Files: usr/share/marionette/configs/*
Copyright: Aliaksandr Siarohin et al.
License: see https://github.com/AliaksandrSiarohin/first-order-model
 The First Order Motion Model's published configs (config/*.yaml of the authors' repository).
EOF

# Depends: the linked libraries (dpkg-shlibdeps reads the binary's NEEDED entries: libc6, libgcc-s1),
# plus what the binary runs or loads with dlopen at run time (seen with LD_DEBUG=files):
#   ffmpeg                     reading and writing videos (runs ffmpeg and ffprobe)
#   libvulkan1, mesa-vulkan-drivers | vulkan-icd
#                              wgpu's Vulkan backend, with Mesa's drivers (lavapipe on machines
#                              without a GPU driver) or another vendor's driver
#   libegl1, libgl1-mesa-dri   wgpu's GL backend (EGL and Mesa's GL drivers)
#   libx11-6 libx11-xcb1 libxcb1 libxcursor1 libxrandr2 libxi6 libxkbcommon0 libxkbcommon-x11-0
#                              winit on X11
#   libwayland-client0 libwayland-cursor0 libwayland-egl1
#                              winit and wgpu on Wayland
#   kmod                       modinfo/modprobe in marionette-setup-virtual-camera
runtime="ffmpeg, libvulkan1, mesa-vulkan-drivers | vulkan-icd, libegl1, libgl1-mesa-dri, libx11-6, libx11-xcb1, libxcb1, libxcursor1, libxrandr2, libxi6, libxkbcommon0, libxkbcommon-x11-0, libwayland-client0, libwayland-cursor0, libwayland-egl1, kmod"
shlib=$out/shlibdeps
rm -rf "$shlib"
mkdir -p "$shlib/debian"
printf 'Source: marionette\n\nPackage: marionette\nArchitecture: any\n' > "$shlib/debian/control"
linked=$(cd "$shlib" && dpkg-shlibdeps -O "$stage/usr/bin/marionette" 2> "$shlib/warnings") \
    || die "dpkg-shlibdeps failed: $(cat "$shlib/warnings")"
linked=${linked#shlibs:Depends=}
[ -n "$linked" ] || die "dpkg-shlibdeps found no libraries for the binary"

installed_size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" << EOF
Package: marionette
Version: $version
Architecture: $arch
Maintainer: ${DEB_MAINTAINER:-marionette developers <marionette@localhost>}
Installed-Size: $installed_size
Depends: $linked, $runtime
Recommends: v4l2loopback-dkms
Section: video
Priority: optional
Description: portrait animated by your webcam, as a virtual camera
 marionette makes a portrait (a photo, a painting, a statue) move the way you
 move: the First Order Motion Model (with a published checkpoint) or a
 weight-free point-tracking engine animates it from your webcam, and the result
 goes out as a virtual camera (v4l2loopback) that video-call programs list.
 It also animates portraits offline from a driving video.
 .
 Run "sudo marionette-setup-virtual-camera" once for the virtual camera.
EOF

deb=$out/marionette_${version}_${arch}.deb
rm -f "$deb"
dpkg-deb --root-owner-group --build "$stage" "$deb" > /dev/null
say "$deb ($(du -h "$deb" | cut -f1)): Depends: $linked, $runtime"
echo "$deb"
