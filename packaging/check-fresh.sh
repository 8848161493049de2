#!/usr/bin/env bash
# The fresh-machine check: what a new user does, on a fresh Debian 12 tree, from a clean clone.
#
# Tree A (a fresh machine of the kind this project is built on): a minimal Debian 12 made with
# mmdebstrap from this machine's own apt sources, holding only build-essential, curl, python3,
# libclang-cpp14, ca-certificates and git, plus Rust from this machine (~/.rustup and
# ~/.cargo/bin, mounted read-only), and a clean `git clone` of the commit checked (no target/).
# Inside it, as root, the README's commands:
#   setup    bash packaging/setup.sh
#   build    cargo build --release                        (the README's `cargo run --release`,
#   run      cargo run --release -- run --idle --frames 30 --vcam none --record out.mp4
#                                                          headless), the recording checked with
#                                                          ffprobe: H.264, about 30 frames
#   test     bash packaging/setup.sh --tests && cargo test (the reference fixtures copied in
#                                                          beside the clone; every test runs,
#                                                          the VM and browser tests included:
#                                                          this is CI's run of the README's
#                                                          test command)
#   deb      bash packaging/build-deb.sh
# Tree B (another fresh tree of the same kind, without the repository or Rust):
#   install  apt-get install ./marionette_<version>_amd64.deb; /usr/bin/marionette --version;
#            (with the fixtures) models add of the tiny checkpoint, after which run picks FOMM;
#            /usr/bin/marionette run --idle --frames 30 --vcam none --record out.mp4, checked
#            with ffprobe; the libraries the window loads at run time are there
#   desktop  the Exec= command line of the installed desktop entry, under Xvfb: its window
#            appears, and Esc closes it with exit status 0
#
#   bash packaging/check-fresh.sh [options]
#     --commit REV    the commit to check (default HEAD; uncommitted changes are not checked)
#     --no-tests      skip the test phase (the README's test command)
#     --vm-build-only the test phase checks that the set-up built the VM but does not boot it
#                     (MARIONETTE_VM_TESTS=build-only; the VM tests take ~6 minutes)
#     --no-install    stop after tree A (no tree B)
#     --deb FILE      skip tree A: check this .deb on tree B only
#     --keep          keep the trees (default: removed at the end unless a phase failed)
#     --refresh-base  rebuild the cached base tarball
#     --verbose       show every command's output (default: in log files, the end shown on failure)
#
# Needs root (mmdebstrap, chroot, mount), mmdebstrap (`bash packaging/setup.sh --tests`), git, the
# network (Debian's mirrors, crates.io), and the fixtures at ../shared/fixtures/fomm beside the
# repository or $MARIONETTE_FIXTURES (for the test phase). Work folder: target/check-fresh (the
# base tarball is cached there; the trees are made fresh from it each run). Each chroot runs in
# its own mount namespace with /proc, /sys, /dev, /dev/pts and a /tmp mounted, unmounted on exit.
# Prints the time of each phase and a summary at the end.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
commit=HEAD
tests=1
vm_tests=boot
install=1
deb_given=""
keep=0
refresh_base=0
verbose=0
while [ $# -gt 0 ]; do
    case "$1" in
        --commit) commit=${2:?--commit needs a revision}; shift ;;
        --no-tests) tests=0 ;;
        --vm-build-only) vm_tests=build-only ;;
        --no-install) install=0 ;;
        --deb) deb_given=${2:?--deb needs a file}; shift ;;
        --keep) keep=1 ;;
        --refresh-base) refresh_base=1 ;;
        --verbose) verbose=1 ;;
        -h | --help) sed -n '2,36p' "$0"; exit 0 ;;
        *) echo "check-fresh: unknown option $1 (--help lists them)" >&2; exit 2 ;;
    esac
    shift
done

work=$repo/target/check-fresh
logs=$work/logs
tree_a=$work/tree-build
tree_b=$work/tree-install
suite=bookworm
# What a fresh machine of this kind has (besides Debian's essential packages and apt).
base_pkgs=build-essential,curl,python3,libclang-cpp14,ca-certificates,git
host_rustup=${RUSTUP_HOME:-$HOME/.rustup}
host_cargo_bin=${CARGO_HOME:-$HOME/.cargo}/bin

# True when something is mounted at or below $1 in this mount namespace.
mounted_below() {
    awk -v p="$1" '$5 == p || index($5, p "/") == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo
}

say() { echo "check-fresh: $*" >&2; }
die() { echo "check-fresh: ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (mmdebstrap, chroot, mount): sudo bash $0"
for tool in mmdebstrap unshare chroot git tar; do
    command -v "$tool" > /dev/null || die "$tool not found (bash packaging/setup.sh --tests installs mmdebstrap)"
done
if [ -z "$deb_given" ]; then
    [ -x "$host_cargo_bin/cargo" ] && [ -d "$host_rustup/toolchains" ] \
        || die "no Rust at $host_rustup and $host_cargo_bin (set RUSTUP_HOME and CARGO_HOME to this machine's)"
fi
if [ -n "$deb_given" ]; then
    deb_given=$(cd "$(dirname "$deb_given")" && pwd)/$(basename "$deb_given")
    [ -f "$deb_given" ] || die "$deb_given not found"
fi

mkdir -p "$work" "$logs"
t_start=$(date +%s)
# Tree A holds a release and a test build (about 14 GB with the packages), tree B about 2 GB.
need_gb=$([ -n "$deb_given" ] && echo 4 || echo 20)
free_gb=$(($(df --output=avail -k "$work" | tail -n 1) / 1024 / 1024))
# The trees of an earlier run are removed before new ones are made.
for t in "$tree_a" "$tree_b"; do
    [ -d "$t" ] && ! mounted_below "$t" && free_gb=$((free_gb + $(du -sk "$t" | cut -f1) / 1024 / 1024))
done
[ "$free_gb" -ge "$need_gb" ] || die "about $need_gb GB of free disk needed in $work, $free_gb GB there"
summary=()

# ------------------------------------------------------------------------------ helpers
secs() { local s=$1; printf '%dm%02ds' $((s / 60)) $((s % 60)); }

# phase NAME COMMAND...: runs COMMAND with its output in logs/NAME.log (and on the terminal with
# --verbose), says how long it took, and stops the check with the log's end when it fails. The
# command runs as a background job in its own process group: errexit holds inside it (it would not
# in an `||` list), and Ctrl-C or a TERM ends the whole group.
phase() {
    local name=$1 t0 rc=0
    shift
    t0=$(date +%s)
    say "== $name: started $(date '+%H:%M:%S')"
    set -m
    if [ "$verbose" = 1 ]; then
        ( set -o pipefail; "$@" 2>&1 | tee "$logs/$name.log" ) &
    else
        ( "$@" ) > "$logs/$name.log" 2>&1 &
    fi
    phase_pid=$!
    set +m
    wait "$phase_pid" || rc=$?
    phase_pid=""
    local took=$(($(date +%s) - t0))
    summary+=("$(printf '%-8s %8s  %s' "$name" "$(secs "$took")" "$([ "$rc" = 0 ] && echo ok || echo "FAILED ($rc)")")")
    if [ "$rc" != 0 ]; then
        [ "$verbose" = 1 ] || { echo "---- end of $logs/$name.log ----" >&2; tail -n 80 "$logs/$name.log" >&2; echo "----" >&2; }
        print_summary
        die "phase $name failed (exit status $rc); full log: $logs/$name.log"
    fi
    say "== $name: ok in $(secs "$took") (load average $(cut -d' ' -f1-3 /proc/loadavg))"
}
phase_pid=""
trap '[ -n "$phase_pid" ] && kill -TERM -- "-$phase_pid" 2> /dev/null; exit 130' INT TERM

print_summary() {
    say "phase times (total $(secs $(($(date +%s) - t_start)))):"
    local line
    for line in "${summary[@]}"; do echo "  $line" >&2; done
}

# Ends the processes still running with their root in tree $1 (started by this check: Xvfb or a
# VM a test left behind), by process id.
end_processes_in() {
    local tree=$1 pid root
    for pid in /proc/[0-9]*; do
        root=$(readlink "$pid/root" 2> /dev/null) || continue
        case "$root" in
            "$tree" | "$tree"/*) kill -9 "${pid#/proc/}" 2> /dev/null || true ;;
        esac
    done
}

# Removes a tree, never through a mount (a bind mount of /dev or of the host's Rust inside it).
remove_tree() {
    local tree=$1
    [ -e "$tree" ] || return 0
    end_processes_in "$tree"
    mounted_below "$tree" && die "something is still mounted under $tree; not removing it (see /proc/self/mountinfo)"
    rm -rf --one-file-system "$tree"
}

# in_tree TREE [--rust] SCRIPT: runs the bash SCRIPT as root inside TREE, in a private mount
# namespace holding /proc, /sys (read-only, its cgroup hierarchies writable), /dev, /dev/pts, and a
# fresh /tmp and /dev/shm; with --rust this machine's Rust (read-only) at /root/.rustup and
# /root/.cargo/bin. The environment is a login's: HOME=/root, PATH with ~/.cargo/bin (what
# rustup's installer sets up), LANG=C.UTF-8.
in_tree() {
    local tree=$1 rust=0
    shift
    [ "$1" = --rust ] && { rust=1; shift; }
    local script=$1
    unshare --mount --propagation private -- bash -euo pipefail -c '
        tree=$1 rust=$2 rustup=$3 cargo_bin=$4 script=$5
        cleanup() { umount -R "$tree/root/.rustup" "$tree/root/.cargo/bin" 2> /dev/null || true
                    umount -R "$tree/tmp" "$tree/dev" "$tree/sys" "$tree/proc" 2> /dev/null || true; }
        trap cleanup EXIT
        mount -t proc proc "$tree/proc"
        mount --bind /sys "$tree/sys" && mount -o remount,bind,ro "$tree/sys"
        # The cgroup hierarchies stay writable: the slow-machine test makes a cgroup with a CPU
        # quota, as it does on any machine where it runs as root.
        if mountpoint -q /sys/fs/cgroup; then mount --rbind /sys/fs/cgroup "$tree/sys/fs/cgroup"; fi
        mount --bind /dev "$tree/dev"
        mount --bind /dev/pts "$tree/dev/pts"
        mount -t tmpfs -o mode=1777 tmpfs "$tree/dev/shm"
        mount -t tmpfs -o mode=1777 tmpfs "$tree/tmp"
        if [ "$rust" = 1 ]; then
            mkdir -p "$tree/root/.rustup" "$tree/root/.cargo/bin"
            mount --bind "$rustup" "$tree/root/.rustup" && mount -o remount,bind,ro "$tree/root/.rustup"
            mount --bind "$cargo_bin" "$tree/root/.cargo/bin" && mount -o remount,bind,ro "$tree/root/.cargo/bin"
        fi
        cp /etc/resolv.conf "$tree/etc/resolv.conf"
        chroot "$tree" /usr/bin/env -i HOME=/root USER=root LOGNAME=root LANG=C.UTF-8 TERM=dumb \
            PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            DEBIAN_FRONTEND=noninteractive \
            /bin/bash -euo pipefail -c "cd /root; $script"
    ' _ "$tree" "$rust" "$host_rustup" "$host_cargo_bin" "$script"
}

# A fresh tree from the base tarball, with this machine's site network set-up: its resolver
# (copied by in_tree) and its local CA certificates (/usr/local/share/ca-certificates, e.g. a
# proxy's), without which https (rustup, crates.io) fails where this machine reaches it.
new_tree() {
    local tree=$1
    remove_tree "$tree"
    mkdir -p "$tree"
    tar -C "$tree" -xf "$base"
    if compgen -G '/usr/local/share/ca-certificates/*.crt' > /dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$tree/usr/local/share/ca-certificates/"
        chroot "$tree" update-ca-certificates > /dev/null
    fi
}

# The ffprobe check of a recording of `--frames 30` (run inside a tree): H.264, exactly 30
# frames (the recorder gets every frame, and `--frames N` records N).
probe_check='
probe() {
    local f=$1 out codec frames
    out=$(ffprobe -v error -count_frames -select_streams v:0 \
        -show_entries stream=codec_name,nb_read_frames -of default=noprint_wrappers=1 "$f")
    echo "ffprobe $f: $(echo $out)"
    codec=$(echo "$out" | sed -n "s/^codec_name=//p")
    frames=$(echo "$out" | sed -n "s/^nb_read_frames=//p")
    [ "$codec" = h264 ] || { echo "expected h264, got \"$codec\"" >&2; return 1; }
    [ "${frames:-0}" = 30 ] || { echo "expected 30 frames, got \"$frames\"" >&2; return 1; }
}
'

finish() {
    local rc=$?
    if [ "$keep" = 1 ] || [ "$rc" != 0 ]; then
        [ -e "$tree_a" ] && say "kept $tree_a (for a look inside; the next run removes it)"
        [ -e "$tree_b" ] && say "kept $tree_b (for a look inside; the next run removes it)"
    else
        remove_tree "$tree_a" || true
        remove_tree "$tree_b" || true
    fi
    exit "$rc"
}
trap finish EXIT

# ------------------------------------------------------------------------------ base
# The base tarball, cached: keyed by the package list and this machine's apt sources (the enabled
# ones: sources.list and sources.list.d/*.list, *.sources).
sources=()
[ -f /etc/apt/sources.list ] && grep -q '^[[:space:]]*deb' /etc/apt/sources.list && sources+=(/etc/apt/sources.list)
for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && sources+=("$f")
done
[ ${#sources[@]} -gt 0 ] || die "no apt sources in /etc/apt/sources.list or /etc/apt/sources.list.d"
key=$( { echo "$suite $base_pkgs"; cat "${sources[@]}"; } | sha256sum | cut -c1-16)
base=$work/base-$suite-$key.tar
make_base() {
    # The format is given: mmdebstrap guesses it from the name's ending, and makes a directory of
    # "*.tar.tmp".
    rm -rf "$work"/base-*.tar.tmp "$base"
    mmdebstrap --variant=apt --format=tar --include="$base_pkgs" "$suite" "$base.tmp" "${sources[@]}"
    mv "$base.tmp" "$base"
    # Older bases (other package lists or sources) are not needed any more.
    find "$work" -maxdepth 1 -name 'base-*.tar' ! -path "$base" -delete
}
if [ "$refresh_base" = 1 ] || [ ! -f "$base" ]; then
    phase base make_base
else
    say "== base: cached $(basename "$base") ($(date -r "$base" '+%Y-%m-%d'))"
fi

# ------------------------------------------------------------------------------ tree A
if [ -z "$deb_given" ]; then
    rev=$(git -C "$repo" rev-parse --verify "$commit^{commit}") || die "no commit $commit"
    fixtures=${MARIONETTE_FIXTURES:-$repo/../shared/fixtures/fomm}
    if [ "$tests" = 1 ]; then
        [ -f "$fixtures/README.md" ] || die "fixtures not found at $fixtures (set MARIONETTE_FIXTURES, or --no-tests)"
    fi
    say "checking commit $rev ($(git -C "$repo" log -1 --format=%s "$rev" | cut -c1-60))"
    [ -z "$(git -C "$repo" status --porcelain --untracked-files=no)" ] \
        || say "note: the working tree has uncommitted changes; they are not part of this check"

    make_tree_a() {
        new_tree "$tree_a"
        git clone --quiet --no-hardlinks "$repo" "$tree_a/root/marionette"
        git -C "$tree_a/root/marionette" checkout --quiet --detach "$rev"
        if [ "$tests" = 1 ]; then
            mkdir -p "$tree_a/root/shared/fixtures"
            cp -r "$fixtures" "$tree_a/root/shared/fixtures/fomm"
        fi
        du -sh "$tree_a"
    }
    phase tree make_tree_a
    phase setup in_tree "$tree_a" --rust 'cd marionette && bash packaging/setup.sh'
    phase build in_tree "$tree_a" --rust 'cd marionette && PATH="$HOME/.cargo/bin:$PATH" cargo build --release'
    phase run in_tree "$tree_a" --rust "$probe_check"'
        cd marionette
        PATH="$HOME/.cargo/bin:$PATH" cargo run --release -- run --idle --frames 30 --vcam none --record /root/out.mp4 --stats
        probe /root/out.mp4'
    if [ "$tests" = 1 ]; then
        vm_env=""
        [ "$vm_tests" = build-only ] && vm_env="MARIONETTE_VM_TESTS=build-only"
        phase test in_tree "$tree_a" --rust "cd marionette && bash packaging/setup.sh --tests && $vm_env "'PATH="$HOME/.cargo/bin:$PATH" cargo test'
    fi
    phase deb in_tree "$tree_a" --rust 'cd marionette && bash packaging/build-deb.sh'
    debs=("$tree_a"/root/marionette/target/debian/marionette_*.deb)
    [ ${#debs[@]} = 1 ] && [ -f "${debs[0]}" ] || die "build-deb.sh made no single .deb: ${debs[*]}"
    deb=$work/$(basename "${debs[0]}")
    cp "${debs[0]}" "$deb"
    say "package: $deb"
else
    deb=$deb_given
fi

# ------------------------------------------------------------------------------ tree B
if [ "$install" = 1 ]; then
    make_tree_b() {
        new_tree "$tree_b"
        cp "$deb" "$tree_b/root/"
        # The tiny test checkpoint, to add as a user adds the published weights.
        if [ -n "${fixtures:-}" ] && [ -f "$fixtures/tiny-legacy.pth.tar" ]; then
            mkdir -p "$tree_b/root/weights"
            cp "$fixtures/tiny-legacy.pth.tar" "$tree_b/root/weights/mine.pth.tar"
            cp "$fixtures/tiny.yaml" "$tree_b/root/weights/mine.yaml"
        fi
        du -sh "$tree_b"
    }
    phase tree-b make_tree_b
    # The libraries winit and wgpu load with dlopen (not in the binary's NEEDED list, so a
    # missing Depends would only show when the window opens on a user's desktop).
    dlopened="libX11.so.6 libX11-xcb.so.1 libxcb.so.1 libXcursor.so.1 libXrandr.so.2 libXi.so.6 libxkbcommon.so.0
        libxkbcommon-x11.so.0 libwayland-client.so.0 libwayland-cursor.so.0 libwayland-egl.so.1
        libvulkan.so.1 libEGL.so.1"
    phase install in_tree "$tree_b" "$probe_check"'
        if [ -e /root/marionette ] || command -v cargo > /dev/null; then echo "not a tree without the repository and Rust" >&2; exit 1; fi
        apt-get update -qq
        apt-get install -y -qq ./'"$(basename "$deb")"' > /root/apt.log 2>&1 || { tail -30 /root/apt.log; exit 1; }
        echo "installed: $(dpkg-query -W -f="\${Package} \${Version}" marionette)"
        marionette --version
        # The cache read once, then searched without a pipe: `ldconfig -p | grep -q` under
        # pipefail fails at random when grep quits early and ldconfig gets SIGPIPE.
        cache=$(ldconfig -p)
        for lib in '"$(echo $dlopened)"'; do
            grep -q "^[[:space:]]*$lib " <<< "$cache" || { echo "$lib is not installed (a Depends is missing)" >&2; exit 1; }
        done
        echo "run-time libraries: all there"
        ls /usr/share/vulkan/icd.d/ | grep -q . || { echo "no Vulkan driver (ICD) installed" >&2; exit 1; }
        for f in /usr/share/man/man1/marionette.1.gz /usr/share/bash-completion/completions/marionette \
                 /usr/share/applications/marionette.desktop /usr/share/icons/hicolor/scalable/apps/marionette.svg \
                 /usr/share/marionette/avatars/eileen-collins.png /usr/share/marionette/configs/vox-256.yaml; do
            [ -f "$f" ] || { echo "$f missing from the package" >&2; exit 1; }
        done
        marionette-setup-virtual-camera --dry-run
        mkdir -p /root/work && cd /root/work
        /usr/bin/marionette --log marionette=info run --idle --frames 30 --vcam none --record out.mp4 --stats 2>&1 | tee run.log
        grep -q "portrait: /usr/share/marionette/avatars/eileen-collins.png" run.log \
            || { echo "the portrait did not come from /usr/share/marionette/avatars" >&2; exit 1; }
        probe out.mp4
        grep -q "models add" run.log || { echo "the classic run did not say how to add FOMM weights" >&2; exit 1; }
        if grep -q "/usr/bin/models" run.log; then echo "a message names /usr/bin/models" >&2; exit 1; fi
        [ -d /usr/share/marionette/models ] || { echo "no /usr/share/marionette/models" >&2; exit 1; }
        if [ -f /root/weights/mine.pth.tar ]; then
            marionette models add /root/weights/mine.pth.tar
            marionette models list
            marionette --log marionette=info run --idle --frames 30 --vcam none --record added.mp4 2>&1 | tee added.log
            grep -q "engine: fomm" added.log || { echo "after models add, run did not pick FOMM" >&2; exit 1; }
            probe added.mp4
        fi'
    phase desktop in_tree "$tree_b" '
        apt-get install -y -qq --no-install-recommends xvfb xauth xdotool desktop-file-utils > /root/apt-x.log 2>&1 || { tail -30 /root/apt-x.log; exit 1; }
        desktop-file-validate /usr/share/applications/marionette.desktop
        cmd=$(sed -n "s/^Exec=//p" /usr/share/applications/marionette.desktop | head -n 1 | sed "s/ *%[fFuUick]//g")
        echo "desktop entry: Exec=$cmd"
        [ -n "$cmd" ]
        # Xvfb picks a free display itself (the X socket namespace is the machine'"'"'s). -noreset:
        # by default it resets when its last client leaves and refuses connections meanwhile, so a
        # polling xdotool that exits just as the app connects would make the app fail to open.
        Xvfb -noreset -displayfd 3 -screen 0 1280x800x24 -nolisten tcp 3> /root/display > /root/xvfb.log 2>&1 &
        xvfb=$!
        trap "kill $xvfb 2> /dev/null || true" EXIT
        for _ in $(seq 100); do [ -s /root/display ] && break; sleep 0.1; done
        [ -s /root/display ] || { cat /root/xvfb.log; echo "Xvfb did not start" >&2; exit 1; }
        export DISPLAY=:$(cat /root/display)
        mkdir -p /root/desktop && cd /root/desktop
        (cd / && exec $cmd) > /root/desktop/window.log 2>&1 &
        app=$!
        window=""
        for _ in $(seq 120); do
            window=$(xdotool search --name "^marionette\$" 2> /dev/null | head -n 1) && [ -n "$window" ] && break
            kill -0 $app 2> /dev/null || { cat /root/desktop/window.log /root/xvfb.log; echo "it exited before its window appeared" >&2; exit 1; }
            sleep 0.5
        done
        [ -n "$window" ] || { cat /root/desktop/window.log; echo "no window titled marionette after 60 s" >&2; exit 1; }
        echo "window $window: $(xdotool getwindowgeometry $window | tr "\n" " ")"
        sleep 5
        kill -0 $app || { cat /root/desktop/window.log; echo "it stopped while running" >&2; exit 1; }
        xdotool windowfocus --sync $window key Escape
        for _ in $(seq 40); do kill -0 $app 2> /dev/null || break; sleep 0.5; done
        if kill -0 $app 2> /dev/null; then kill $app; echo "Esc did not close it in 20 s" >&2; exit 1; fi
        rc=0; wait $app || rc=$?
        cat /root/desktop/window.log
        [ $rc = 0 ] || { echo "exit status $rc" >&2; exit 1; }
        echo "the desktop entry started marionette; its window came up and Esc closed it"'
fi

print_summary
say "all checks passed"
