#!/usr/bin/env bash
# Run a command inside a QEMU VM (software emulation, no KVM) whose Debian kernel has
# the real vivid (virtual webcam) and v4l2loopback drivers loaded.
#
#   tests/vm/run.sh <host-dir-to-share> <command> [args...]
#
# Prints the command's stdout/stderr (streamed live, on stdout/stderr) and exits
# with its exit status. Run tests/vm/build.sh first.
#
# What the command sees:
#   * the host's root file system, read-only over 9p, under an overlay whose writes
#     go to guest RAM: every host program and library is there (ffmpeg, the
#     project's binaries, ...), and the command may write anywhere, but nothing
#     reaches the host
#   * except <host-dir-to-share>, mounted read-write at the same path as on the host
#     (also in $VM_SHARE): results go there
#   * working directory: the host's current directory; fresh /proc, /sys, /dev,
#     /run, /dev/shm; loopback network only; runs as root; stdin is /dev/null
#   * /dev/video0: vivid, one webcam input (640x480 YUYV among its formats)
#     /dev/video10: v4l2loopback, card label "marionette", exclusive_caps=1
#
# Environment:
#   VM_CACHE          cache folder of build.sh (default <repository>/target/vm)
#   VM_TIMEOUT        seconds before the VM is killed (default 600); exit status 124
#   VM_MEM            guest memory in MiB (default 2048)
#   VM_SMP            guest CPUs (default 2)
#   VM_VIVID_OPTS     vivid module options (default below)
#   VM_LOOPBACK_OPTS  v4l2loopback module options (default below)
#   VM_PASS_ENV       names of host variables to pass to the command, e.g. "RUST_LOG RUST_BACKTRACE"
#   VM_VERBOSE=1      kernel messages on, console log printed to stderr at the end
#   VM_CONSOLE_LOG    also copy the guest console log (kernel + init) to this file
#
# Exit status: the command's; 124 when VM_TIMEOUT ran out; 125 when the VM failed
# before the command finished (the console log is printed). run.sh's own messages
# go to stderr prefixed "run.sh:".
#
# Caveats: the emulated CPU (-cpu max under TCG) has AVX2 but no AVX-512, so
# binaries built with -C target-cpu=native on an AVX-512 host crash with SIGILL.
# Emulated code runs about 10x slower than on the host (more under host load).
# /dev has no udev: device nodes are root-only (crw-------), fine as the command
# runs as root. QEMU runs as the caller; the guest reads the host's files with
# the caller's rights.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
VM_CACHE=${VM_CACHE:-$repo/target/vm}
VM_TIMEOUT=${VM_TIMEOUT:-600}
VM_MEM=${VM_MEM:-2048}
VM_SMP=${VM_SMP:-2}
# vivid: one instance (n_devs=1), only a video capture node (node_types=0x1), one
# input of type webcam (num_inputs=1 input_types=0x0), no error-injection controls.
VM_VIVID_OPTS=${VM_VIVID_OPTS:-n_devs=1 node_types=0x1 num_inputs=1 input_types=0x0 no_error_inj=1}
# v4l2loopback: one device at /dev/video10; exclusive_caps=1 makes it report only
# OUTPUT until a writer has set a format, then only CAPTURE (what browsers and
# conferencing apps need to list it as a camera).
VM_LOOPBACK_OPTS=${VM_LOOPBACK_OPTS:-devices=1 video_nr=10 card_label=marionette exclusive_caps=1}

say() { echo "run.sh: $*" >&2; }
die() { echo "run.sh: ERROR: $*" >&2; exit 125; }

[ $# -ge 2 ] || {
    echo "usage: $0 <host-dir-to-share> <command> [args...]" >&2
    exit 2
}
share=$1
shift
[ -d "$share" ] || die "shared folder '$share' does not exist (create it first)"
share=$(cd "$share" && pwd -P)
[ "$share" != / ] || die "refusing to share / read-write; give a dedicated output folder"
case "$share" in
    /proc | /proc/* | /sys | /sys/* | /dev | /dev/* | /run | /run/*)
        die "the shared folder cannot be under /proc, /sys, /dev or /run (the guest mounts its own there)" ;;
esac
case "$VM_TIMEOUT$VM_MEM$VM_SMP" in
    *[!0-9]*) die "VM_TIMEOUT, VM_MEM and VM_SMP must be whole numbers" ;;
esac

kdir=$VM_CACHE/current
for f in vmlinuz initrd.gz; do
    [ -f "$kdir/$f" ] || die "$kdir/$f missing: run tests/vm/build.sh first (with the same VM_CACHE)"
done
command -v qemu-system-x86_64 > /dev/null || die "qemu-system-x86_64 not found: run tests/vm/build.sh first"
command -v timeout > /dev/null || die "timeout (coreutils) not found"

# Private control folder, shared read-write with the guest as 9p tag "vmctl":
# config.sh and cmd.sh in; rc, timing and setup-error out; console log and the
# FIFOs that carry the command's stdout/stderr.
ctl=$(mktemp -d "${TMPDIR:-/tmp}/vm-run.XXXXXX")
pids=()
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
    rm -rf "$ctl"
}
trap cleanup EXIT

# Single-quote a word for POSIX sh (the guest runs cmd.sh with the host's /bin/sh).
q() {
    local s=${1//\'/\'\\\'\'}
    printf "'%s'" "$s"
}

{
    echo "VIVID_OPTS=$(q "$VM_VIVID_OPTS")"
    echo "LOOPBACK_OPTS=$(q "$VM_LOOPBACK_OPTS")"
    echo "SHARE_PATH=$(q "$share")"
} > "$ctl/config.sh"

{
    echo "# written by tests/vm/run.sh"
    echo "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    echo "export HOME=/root TERM=dumb LANG=C.UTF-8 VM_SHARE=$(q "$share")"
    for name in ${VM_PASS_ENV:-}; do
        case "$name" in
            *[!A-Za-z0-9_]* | [0-9]*) die "VM_PASS_ENV: '$name' is not a variable name" ;;
        esac
        if [ -n "${!name+set}" ]; then
            echo "export $name=$(q "${!name}")"
        fi
    done
    echo "cd $(q "$PWD") 2>/dev/null || cd /"
    printf 'exec'
    for a in "$@"; do printf ' %s' "$(q "$a")"; done
    echo
} > "$ctl/cmd.sh"

# The command's stdout/stderr come back through guest serial ports ttyS1/ttyS2,
# which QEMU connects to FIFO pairs (<name>.in: to the guest, unused; <name>.out:
# from the guest).
for n in out err; do mkfifo "$ctl/$n.in" "$ctl/$n.out"; done
cat "$ctl/out.out" &
pids+=($!)
cat "$ctl/err.out" >&2 &
pids+=($!)

append="console=ttyS0 panic=-1 mitigations=off"
if [ "${VM_VERBOSE:-0}" = 1 ]; then append="$append loglevel=7"; else append="$append quiet"; fi

# 9p: security_model=none passes the host's owners and modes through (QEMU runs as
# root here); multidevs=remap keeps inode numbers unique across the host's mounts.
qemu=(
    qemu-system-x86_64
    -accel tcg -cpu max -m "$VM_MEM" -smp "$VM_SMP"
    -nodefaults -no-user-config -display none -no-reboot
    -kernel "$kdir/vmlinuz" -initrd "$kdir/initrd.gz" -append "$append"
    -serial "file:$ctl/console.log"
    -serial "pipe:$ctl/out"
    -serial "pipe:$ctl/err"
    -fsdev "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap"
    -device "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot"
    -fsdev "local,id=vmshare,path=$share,security_model=none,multidevs=remap"
    -device "virtio-9p-pci,fsdev=vmshare,mount_tag=vmshare"
    -fsdev "local,id=vmctl,path=$ctl,security_model=none"
    -device "virtio-9p-pci,fsdev=vmctl,mount_tag=vmctl"
)
case "$share$ctl" in
    *,*) die "paths with a comma cannot be given to QEMU's -fsdev: $share / $ctl" ;;
esac

t0=$(date +%s.%N)
set +e
timeout --kill-after=10 "$VM_TIMEOUT" "${qemu[@]}" < /dev/null
qrc=$?
set -e
t1=$(date +%s.%N)

# QEMU has closed its FIFO ends: the readers get EOF and finish. A reader still
# blocked in open() (QEMU never started) is killed.
for _ in 1 2 3 4 5 6 7 8 9 10; do
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2> /dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.2
done
for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
wait 2> /dev/null || true
pids=()

[ -n "${VM_CONSOLE_LOG:-}" ] && cp "$ctl/console.log" "$VM_CONSOLE_LOG" 2> /dev/null
show_console() {
    echo "run.sh: ---- guest console ($1) ----" >&2
    if [ "$1" = all ]; then cat "$ctl/console.log" >&2; else tail -n 40 "$ctl/console.log" >&2; fi
    echo "run.sh: ---- end of guest console ----" >&2
}
[ "${VM_VERBOSE:-0}" = 1 ] && show_console all

total=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
    [ "${VM_VERBOSE:-0}" = 1 ] || show_console "last 40 lines"
    say "timed out after ${VM_TIMEOUT} s (VM_TIMEOUT); VM killed"
    exit 124
fi
if [ -f "$ctl/setup-error" ]; then
    [ "${VM_VERBOSE:-0}" = 1 ] || show_console "last 40 lines"
    die "guest setup failed: $(cat "$ctl/setup-error")"
fi
if [ ! -f "$ctl/rc" ]; then
    [ "${VM_VERBOSE:-0}" = 1 ] || show_console "last 40 lines"
    die "the VM stopped (QEMU status $qrc) without reporting the command's exit status"
fi
rc=$(cat "$ctl/rc")
case "$rc" in
    '' | *[!0-9]*) die "bad exit status '$rc' from the guest" ;;
esac
if [ -f "$ctl/times" ]; then
    read -r t_boot t_end < "$ctl/times" || true
    say "status $rc; total ${total} s (boot to command ${t_boot:-?} s, guest uptime at end ${t_end:-?} s)"
else
    say "status $rc; total ${total} s"
fi
exit "$rc"
