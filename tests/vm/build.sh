#!/usr/bin/env bash
# Build (or refresh) everything tests/vm/run.sh needs to boot a Debian kernel under
# QEMU software emulation with the real vivid (virtual webcam) and v4l2loopback
# drivers:
#
#   $VM_CACHE/debs/                      downloaded .deb files (kept, reused)
#   $VM_CACHE/<kver>/vmlinuz             the kernel
#   $VM_CACHE/<kver>/initrd.gz           busybox + modules + tests/vm/init
#   $VM_CACHE/<kver>/modules-tree/       the modules used (+ v4l2loopback.ko), modules.dep
#   $VM_CACHE/current -> <kver>          what run.sh boots
#
# Idempotent: finished steps are skipped, so a second call takes about a second.
# Needs root (apt-get install) unless everything is already installed.
#
# Environment:
#   VM_CACHE           cache folder (default: <repository>/target/vm)
#   VM_KERNEL_VERSION  kernel ABI to use, e.g. 6.1.0-56 (default: the version the
#                      linux-image-amd64 metapackage depends on, read from apt now)
#   VM_APT_UPDATE=1    run apt-get update first (it also runs by itself when apt
#                      does not know a package it needs)
#
# Which kernel: the one linux-image-amd64 depends on, read from apt at run time (it
# changes with Debian updates). Not the newest linux-image-* in the archive:
# bookworm also carries 6.12 kernels, and bookworm's v4l2loopback 0.12.7 source does
# not build against 6.12 (strlcpy is gone).
#
# Host packages installed with apt: qemu-system-x86 (the emulator), the matching
# linux-headers (to build v4l2loopback), make, cpio, kmod (depmod/modprobe for
# dependency resolution), gzip, ffmpeg and v4l-utils (the guest runs the host's
# programs over 9p, see run.sh). Guest-only packages (the kernel image, busybox-static,
# v4l2loopback-dkms) are only downloaded and unpacked into the cache, not installed,
# so the host's boot files and dkms are left alone.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
VM_CACHE=${VM_CACHE:-$repo/target/vm}
mkdir -p "$VM_CACHE"
VM_CACHE=$(cd "$VM_CACHE" && pwd)

say() { echo "build.sh: $*" >&2; }
die() { echo "build.sh: ERROR: $*" >&2; exit 1; }

t0=$(date +%s.%N)

command -v apt-get > /dev/null || die "apt-get not found: this script expects Debian 12 (bookworm) x86_64"
[ "$(uname -m)" = x86_64 ] || die "host is $(uname -m); only x86_64 is supported"

apt_updated=0
apt_update() {
    if [ "$apt_updated" = 0 ]; then
        say "apt-get update"
        apt-get update -qq || die "apt-get update failed (are the package mirrors reachable?)"
        apt_updated=1
    fi
}
[ "${VM_APT_UPDATE:-0}" = 1 ] && apt_update

# Install the named packages that are not installed yet.
apt_install() {
    local missing=() p
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2> /dev/null | grep -q 'install ok installed'; then
            missing+=("$p")
        fi
    done
    [ "${#missing[@]}" = 0 ] && return 0
    [ "$(id -u)" = 0 ] || die "need root to install: ${missing[*]} (or install them yourself)"
    say "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" > "$VM_CACHE/apt-install.log" 2>&1; then
        # Stale or empty package lists are the usual cause: refresh once and retry.
        apt_update
        apt-get install -y -qq --no-install-recommends "${missing[@]}" > "$VM_CACHE/apt-install.log" 2>&1 \
            || die "apt-get install ${missing[*]} failed; log: $VM_CACHE/apt-install.log"
    fi
}

# Download a package's .deb (candidate version) into $VM_CACHE/debs unless a file
# for it is already there; prints the .deb path.
apt_fetch() {
    local pkg=$1 f
    f=$(find "$VM_CACHE/debs" -maxdepth 1 -name "${pkg}_*.deb" -print -quit)
    if [ -z "$f" ]; then
        say "apt-get download $pkg"
        # apt drops privileges to _apt for downloads; let it write the folder.
        chown _apt "$VM_CACHE/debs" 2> /dev/null || true
        if ! (cd "$VM_CACHE/debs" && apt-get download -qq "$pkg") > "$VM_CACHE/apt-download.log" 2>&1; then
            apt_update
            (cd "$VM_CACHE/debs" && apt-get download -qq "$pkg") > "$VM_CACHE/apt-download.log" 2>&1 \
                || die "apt-get download $pkg failed; log: $VM_CACHE/apt-download.log"
        fi
        f=$(find "$VM_CACHE/debs" -maxdepth 1 -name "${pkg}_*.deb" -print -quit)
        [ -n "$f" ] || die "apt-get download $pkg produced no .deb in $VM_CACHE/debs"
    fi
    echo "$f"
}

# Unpack a .deb into a folder once (a stamp file marks completion).
unpack() {
    local deb=$1 dest=$2
    if [ ! -e "$dest/.unpacked" ] || [ "$(cat "$dest/.unpacked")" != "$(basename "$deb")" ]; then
        rm -rf "$dest"
        mkdir -p "$dest"
        dpkg-deb -x "$deb" "$dest" || die "cannot unpack $deb"
        basename "$deb" > "$dest/.unpacked"
    fi
}

mkdir -p "$VM_CACHE/debs"

# --- 1. kernel version ------------------------------------------------------------
kernel_from_apt() {
    apt-cache depends linux-image-amd64 2> /dev/null \
        | sed -n 's/^ *Depends: linux-image-\([0-9][^ ]*\)-amd64$/\1/p' | head -n 1
}
if [ -n "${VM_KERNEL_VERSION:-}" ]; then
    kabi=$VM_KERNEL_VERSION
else
    kabi=$(kernel_from_apt)
    if [ -z "$kabi" ]; then
        apt_update
        kabi=$(kernel_from_apt)
    fi
    [ -n "$kabi" ] || die "cannot read the kernel version from apt (apt-cache depends linux-image-amd64 gave nothing)"
fi
kver=$kabi-amd64
say "kernel $kver"
kdir=$VM_CACHE/$kver
mkdir -p "$kdir"

# --- 2. host packages ---------------------------------------------------------------
apt_install qemu-system-x86 make cpio kmod gzip ffmpeg v4l-utils "linux-headers-$kver"
headers=/usr/src/linux-headers-$kver
[ -f "$headers/Makefile" ] || die "$headers/Makefile missing after installing linux-headers-$kver"

# --- 3. guest packages (downloaded and unpacked, not installed) ---------------------
kdeb=$(apt_fetch "linux-image-$kver")
unpack "$(apt_fetch busybox-static)" "$VM_CACHE/busybox-pkg"
unpack "$(apt_fetch v4l2loopback-dkms)" "$VM_CACHE/v4l2loopback-pkg"
busybox=$VM_CACHE/busybox-pkg/bin/busybox
[ -x "$busybox" ] || die "no bin/busybox in busybox-static"
lbsrc=$(find "$VM_CACHE/v4l2loopback-pkg/usr/src" -maxdepth 1 -type d -name 'v4l2loopback-*' -print -quit)
if [ -z "$lbsrc" ] || [ ! -f "$lbsrc/v4l2loopback.c" ]; then
    die "no v4l2loopback source in v4l2loopback-dkms"
fi

# Modules the guest loads; their dependencies are added by modprobe below.
# base: what mounting the 9p shares and the overlay root needs; media: the V4L2 drivers.
base_modules=(virtio_pci 9pnet_virtio 9p overlay)
media_modules=(vivid v4l2loopback)

# --- 4. kernel, modules tree, v4l2loopback.ko ------------------------------------------
# The kernel package is unpacked into $kdir/modules-tree, v4l2loopback.ko is added
# under extra/, depmod makes modules.dep (the package ships none: its postinst
# makes it), and the tree is pruned to the modules listed above and their
# dependencies (about 10 MB instead of 400). A stamp records the inputs.
mtree=$kdir/modules-tree
mdir=$mtree/lib/modules/$kver
stamp="$(basename "$kdeb") $(basename "$lbsrc") ${base_modules[*]} ${media_modules[*]}"

# Ordered insmod list (dependencies first) for the named modules, paths relative to
# lib/modules/<kver>/. A module appears once, in the first list that needs it.
declare -A listed=()
module_list() {
    local m line path rel
    for m in "$@"; do
        # --show-depends prints "insmod <path> " per module, or "builtin <name>".
        modprobe -d "$mtree" -S "$kver" --show-depends "$m" > "$kdir/show-depends.tmp" 2>&1 \
            || die "module $m not found for $kver: $(cat "$kdir/show-depends.tmp")"
        while read -r line; do
            case "$line" in
                insmod\ *)
                    path=${line#insmod }
                    path=${path%% *}
                    rel=${path#"$mdir"/}
                    if [ -z "${listed[$rel]:-}" ]; then
                        listed[$rel]=1
                        echo "$rel"
                    fi
                    ;;
            esac
        done < "$kdir/show-depends.tmp"
    done
    rm -f "$kdir/show-depends.tmp"
}

if [ ! -e "$kdir/tree.stamp" ] || [ "$(cat "$kdir/tree.stamp")" != "$stamp" ]; then
    rm -rf "$mtree" "$kdir/tree.stamp"
    mkdir -p "$mtree"
    say "unpacking $(basename "$kdeb")"
    dpkg-deb -x "$kdeb" "$mtree" || die "cannot unpack $kdeb"
    [ -f "$mtree/boot/vmlinuz-$kver" ] || die "no boot/vmlinuz-$kver in $(basename "$kdeb")"
    cp "$mtree/boot/vmlinuz-$kver" "$kdir/vmlinuz"
    cp "$mtree/boot/config-$kver" "$kdir/config"
    rm -rf "${mtree:?}/boot" "${mtree:?}/usr"

    # Build out of tree in a private copy of the source (kbuild writes objects
    # next to it).
    rm -rf "$kdir/v4l2loopback-build"
    cp -a "$lbsrc" "$kdir/v4l2loopback-build"
    say "building $(basename "$lbsrc") against $headers"
    make -C "$headers" M="$kdir/v4l2loopback-build" modules > "$kdir/v4l2loopback-build.log" 2>&1 \
        || die "v4l2loopback build failed; log: $kdir/v4l2loopback-build.log"
    mkdir -p "$mdir/extra"
    cp "$kdir/v4l2loopback-build/v4l2loopback.ko" "$mdir/extra/"
    depmod -b "$mtree" "$kver" || die "depmod failed for $mtree"

    module_list "${base_modules[@]}" > "$kdir/base.list"
    module_list "${media_modules[@]}" > "$kdir/media.list"
    # Prune: keep the listed modules and the modules.* index files.
    keep=$kdir/keep.tmp
    cat "$kdir/base.list" "$kdir/media.list" > "$keep"
    (cd "$mdir" && find . -name '*.ko' -printf '%P\n') | grep -vxF -f "$keep" \
        | (cd "$mdir" && xargs -r rm -f)
    find "$mdir" -type d -empty -delete
    rm -f "$keep"
    echo "$stamp" > "$kdir/tree.stamp"
fi

# --- 5. initramfs (always rebuilt: a second) -------------------------------------------
ird=$kdir/initramfs
rm -rf "$ird"
mkdir -p "$ird/bin" "$ird/modules"
cp "$kdir/base.list" "$kdir/media.list" "$ird/modules/"
while read -r rel; do
    [ -f "$mdir/$rel" ] || die "module $rel missing from $mdir (delete $kdir and rerun)"
    mkdir -p "$ird/modules/$(dirname "$rel")"
    cp "$mdir/$rel" "$ird/modules/$rel"
done < <(cat "$kdir/base.list" "$kdir/media.list")
cp "$busybox" "$ird/bin/busybox"
ln -s busybox "$ird/bin/sh"
cp "$here/init" "$ird/init"
chmod 755 "$ird/init"
echo "$kver" > "$ird/kernel-version"
(cd "$ird" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet --owner=0:0) \
    | gzip -1 > "$kdir/initrd.gz.tmp" || die "cannot build the initramfs"
mv "$kdir/initrd.gz.tmp" "$kdir/initrd.gz"

ln -sfn "$kver" "$VM_CACHE/current"

# Drop what earlier kernel versions left (folders and kernel .debs).
for d in "$VM_CACHE"/*-amd64; do
    [ -d "$d" ] && [ "$d" != "$kdir" ] && { say "removing stale $d"; rm -rf "$d"; }
done
for f in "$VM_CACHE"/debs/linux-image-*.deb; do
    [ -f "$f" ] && [ "$f" != "$kdeb" ] && { say "removing stale $f"; rm -f "$f"; }
done

t1=$(date +%s.%N)
say "ready: $VM_CACHE/current -> $kver ($(du -h "$kdir/initrd.gz" | cut -f1) initramfs, $(cat "$kdir/base.list" "$kdir/media.list" | wc -l) modules) in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s"
