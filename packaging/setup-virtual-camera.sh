#!/usr/bin/env bash
# Sets up the virtual camera marionette writes to (v4l2loopback): one device, /dev/video10, named
# "marionette", exclusive_caps=1 (Chrome, Meet, Zoom and Teams list a v4l2loopback device only with
# exclusive_caps=1, and only while a program is writing to it; marionette writes from the moment
# it starts). Installed by the Debian package as `marionette-setup-virtual-camera`.
#
# It says what it will change and asks before changing anything (--yes: do not ask; --dry-run:
# only say). Idempotent: safe to re-run.
set -euo pipefail

name=$(basename "$0")
yes=0
dry=0
for arg in "$@"; do
    case "$arg" in
        -y | --yes) yes=1 ;;
        -n | --dry-run) dry=1 ;;
        -h | --help)
            echo "usage: $name [--yes] [--dry-run]"
            echo "Sets up v4l2loopback as marionette's virtual camera (/dev/video10 \"marionette\")."
            echo "Says exactly what it will change, then asks (--yes: go ahead; --dry-run: only say)."
            exit 0
            ;;
        *) echo "$name: unknown option $arg (--yes, --dry-run, --help)" >&2; exit 2 ;;
    esac
done

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
OPTIONS="devices=1 video_nr=10 card_label=marionette exclusive_caps=1"
kernel=$(uname -r)
modprobe_conf=/etc/modprobe.d/marionette-v4l2loopback.conf
load_conf=/etc/modules-load.d/marionette-v4l2loopback.conf

# The packages, by name: the DKMS source and the headers it is built against for this kernel.
# Asked for only when the running kernel has no v4l2loopback module yet (modinfo looks for the
# exact module modprobe would load; some kernels ship it already).
pkgs=()
if ! modinfo v4l2loopback > /dev/null 2>&1; then
    pkgs=(v4l2loopback-dkms "linux-headers-$kernel")
fi
loaded=0
lsmod 2> /dev/null | grep -q '^v4l2loopback ' && loaded=1

echo "$name will:"
step=1
if [ ${#pkgs[@]} -gt 0 ]; then
    echo "  $step. install with apt-get: ${pkgs[*]} (DKMS builds the v4l2loopback module for $kernel)"
    step=$((step + 1))
fi
echo "  $step. write $modprobe_conf:"
echo "       options v4l2loopback $OPTIONS"
step=$((step + 1))
echo "  $step. write $load_conf (load the module at every boot):"
echo "       v4l2loopback"
step=$((step + 1))
if [ "$loaded" = 1 ]; then
    echo "  (v4l2loopback is loaded already: it is left as it is; 'sudo modprobe -r v4l2loopback' and"
    echo "   running this again applies the options above)"
else
    echo "  $step. load it now: modprobe v4l2loopback $OPTIONS"
fi
echo "Undo: sudo rm $modprobe_conf $load_conf; sudo modprobe -r v4l2loopback; sudo apt-get remove v4l2loopback-dkms"

[ "$dry" = 1 ] && exit 0
if [ "$yes" = 0 ]; then
    if [ ! -t 0 ]; then
        echo "$name: not asking without a terminal; run with --yes to go ahead" >&2
        exit 1
    fi
    read -r -p "Go ahead? [y/N] " answer
    case "$answer" in
        y | Y | yes | Yes) ;;
        *) echo "nothing changed"; exit 1 ;;
    esac
fi

if [ ${#pkgs[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
    if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${pkgs[@]}" > /dev/null; then
        echo "$name: apt-get install ${pkgs[*]} failed. If linux-headers-$kernel does not exist, the" >&2
        echo "$name: running kernel is not a packaged one: install its headers, or boot a packaged kernel." >&2
        exit 1
    fi
    modinfo v4l2loopback > /dev/null 2>&1 || {
        echo "$name: v4l2loopback-dkms is installed but no module was built for $kernel (see 'dkms status')" >&2
        exit 1
    }
fi

echo "options v4l2loopback $OPTIONS" | $SUDO tee "$modprobe_conf" > /dev/null
echo "v4l2loopback" | $SUDO tee "$load_conf" > /dev/null

if [ "$loaded" = 0 ] && ! $SUDO modprobe v4l2loopback $OPTIONS; then
    cat >&2 << 'MSG'
the kernel refused to load v4l2loopback.
If Secure Boot is on, the DKMS-built module must be signed: run `sudo mokutil --import
/var/lib/dkms/mok.pub`, reboot, and enrol the key in the blue MOK screen (or turn Secure Boot
off in the firmware settings). Then run this again.
MSG
    exit 1
fi
ls -l /dev/video10 2> /dev/null && echo "virtual camera: ready as /dev/video10 (\"marionette\")"
