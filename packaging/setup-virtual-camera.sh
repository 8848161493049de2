#!/usr/bin/env bash
# Sets up the virtual camera marionette writes to: installs v4l2loopback (Debian/Ubuntu
# `v4l2loopback-dkms`), writes its module options for every boot and loads it now.
# Idempotent. Options: one device, /dev/video10, named "marionette", exclusive_caps=1 (Chrome,
# Meet, Zoom and Teams list a v4l2loopback device only with exclusive_caps=1, and only while a
# program is writing to it; marionette writes from the moment it starts).
set -euo pipefail

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
OPTIONS="devices=1 video_nr=10 card_label=marionette exclusive_caps=1"

if ! modinfo v4l2loopback >/dev/null 2>&1; then
    echo "virtual camera: installing v4l2loopback-dkms and headers for $(uname -r)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq v4l2loopback-dkms "linux-headers-$(uname -r)" >/dev/null \
        || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq v4l2loopback-dkms >/dev/null
fi

echo "options v4l2loopback $OPTIONS" | $SUDO tee /etc/modprobe.d/marionette-v4l2loopback.conf >/dev/null
echo "v4l2loopback" | $SUDO tee /etc/modules-load.d/marionette-v4l2loopback.conf >/dev/null

if lsmod | grep -q '^v4l2loopback'; then
    echo "virtual camera: v4l2loopback is already loaded (unload it with 'sudo modprobe -r v4l2loopback' to apply new options)"
elif ! $SUDO modprobe v4l2loopback $OPTIONS; then
    cat >&2 <<'MSG'
virtual camera: the kernel refused to load v4l2loopback.
If Secure Boot is on, the DKMS-built module must be signed: run `sudo mokutil --import
/var/lib/dkms/mok.pub`, reboot, and enrol the key in the blue MOK screen (or turn Secure Boot
off in the firmware settings). Then run this script again.
MSG
    exit 1
fi
ls -l /dev/video10 2>/dev/null && echo "virtual camera: ready as /dev/video10 (\"marionette\")"
