#!/usr/bin/env bash
# Prepares a CUDA 13.0 build environment for `cargo build --features cuda` on a machine with no
# CUDA toolkit (and no GPU needed): NVIDIA's pinned compiler wheels from PyPI, a CUDA_HOME with
# link-time stubs, and an env.sh. Installs python3-pip and build-essential with apt when missing,
# and has cargo download the crates (the stub library is made from cudarc's sources). Idempotent:
# re-running only redoes missing parts. Machines with the CUDA 13.0 toolkit installed do not need
# it (nvcc on PATH and CUDA_COMPUTE_CAP are enough).
#
#   bash packaging/setup-cuda-build.sh           # into target/cuda-toolchain
#   CUDA_SETUP_ROOT=/some/dir bash packaging/setup-cuda-build.sh
#   source target/cuda-toolchain/env.sh && cargo build --release --features cuda
#
# Produces, under <root>:
#   wheels/  pip --target prefix holding NVIDIA's pinned CUDA 13.0 wheels (nvidia/cu13/...)
#   home/    a CUDA_HOME: bin -> wheel bin (nvcc, ptxas, ...), include -> wheel headers,
#            lib/ unversioned .so symlinks + a stub libcuda.so (soname libcuda.so.1).
#            FOR LINKING ONLY: never put home/lib on LD_LIBRARY_PATH on a machine with a GPU.
#   env.sh   exports for the build.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT="${CUDA_SETUP_ROOT:-$REPO/target/cuda-toolchain}"
mkdir -p "$ROOT"
WHEELS="$ROOT/wheels"
HOME_DIR="$ROOT/home"
CU13="$WHEELS/nvidia/cu13"
PYTHON="${PYTHON:-python3}"

# Exact pins: an unpinned nvcc pulls crt/nvvm 13.5, whose PTX ptxas 13.0 rejects,
# and cudarc 0.19.10's build script panics on 13.5. The GPU machine's driver (580) is CUDA 13.0.
PINS=(
  nvidia-cuda-nvcc==13.0.88
  nvidia-cuda-crt==13.0.88
  nvidia-nvvm==13.0.88
  nvidia-cuda-runtime==13.0.96
  nvidia-cuda-cccl==13.0.85
  nvidia-cublas==13.0.2.14
  nvidia-curand==10.4.0.35
  nvidia-cuda-nvrtc==13.0.88
)
# For `--features cudnn` run with WITH_CUDNN=1 (adds nvidia-cudnn-cu13==9.13.0.50).
if [[ "${WITH_CUDNN:-0}" == 1 ]]; then
  PINS+=(nvidia-cudnn-cu13==9.13.0.50)
fi

log() { printf '[setup-cuda] %s\n' "$*" >&2; }
die() { printf '[setup-cuda] ERROR: %s\n' "$*" >&2; exit 1; }

# What it runs, installed by Debian package name (a fresh Debian has python3 but not pip):
# python3-pip (the wheels), build-essential (cc for the stub library).
need=()
for pkg in python3-pip build-essential; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
if [[ ${#need[@]} -gt 0 ]]; then
  SUDO=""
  [[ "$(id -u)" -ne 0 ]] && SUDO="sudo"
  log "installing ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
    || die "apt-get install ${need[*]} failed"
fi
command -v "$PYTHON" >/dev/null || die "$PYTHON not found; install Python 3 with pip (or set PYTHON=...)"
"$PYTHON" -m pip --version >/dev/null 2>&1 || die "$PYTHON has no pip (set PYTHON to a Python 3 with pip)"
command -v cc >/dev/null || die "no C compiler 'cc' (apt-get install build-essential)"

# ---------------------------------------------------------------- 1. wheels
STAMP="$WHEELS/.pins"
WANT="$(printf '%s\n' "${PINS[@]}")"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -x "$CU13/bin/nvcc" ]]; then
  log "wheels already installed in $WHEELS"
else
  log "installing pinned CUDA wheels into $WHEELS"
  rm -rf "$WHEELS"
  # --no-deps: exactly these versions, nothing the resolver might pull in besides
  # (checked: with deps resolved, pip picks exactly this set anyway).
  "$PYTHON" -m pip install --disable-pip-version-check --no-input --no-deps \
      --only-binary=:all: --target "$WHEELS" "${PINS[@]}"
  printf '%s\n' "$WANT" > "$STAMP"
fi

for f in bin/nvcc bin/ptxas nvvm/bin/cicc include/cuda.h include/cuda_fp16.h include/nv/target \
         lib/libcudart.so.13 lib/libcublas.so.13 lib/libcublasLt.so.13 lib/libcurand.so.10 lib/libnvrtc.so.13; do
  [[ -e "$CU13/$f" ]] || die "expected $CU13/$f after installing the wheels; wheel layout changed?"
done
"$CU13/bin/nvcc" --version | grep -q 'release 13\.0' || die "nvcc in $CU13/bin is not release 13.0"

# ---------------------------------------------------------------- 2. CUDA_HOME
mkdir -p "$HOME_DIR/lib"
ln -sfn "$CU13/bin" "$HOME_DIR/bin"
ln -sfn "$CU13/include" "$HOME_DIR/include"
ln -sfn "$CU13/nvvm" "$HOME_DIR/nvvm"

# Unversioned names for the linker (-lcublas etc.). The binary records the sonames (.so.13/.so.10).
link_lib() { # name, dir holding the versioned file
  local name="$1" dir="$2" target
  target="$(cd "$dir" && ls -1 "$name".so.* 2>/dev/null | sort -V | head -n1)"
  [[ -n "$target" ]] || die "no $name.so.* in $dir"
  ln -sfn "$dir/$target" "$HOME_DIR/lib/$name.so"
}
for l in libcublas libcublasLt libcurand libnvrtc libcudart; do
  link_lib "$l" "$CU13/lib"
done
if [[ "${WITH_CUDNN:-0}" == 1 ]]; then
  CUDNN_LIB="$(ls -d "$WHEELS"/nvidia/cudnn/lib "$CU13"/lib 2>/dev/null | while read -r d; do
                 ls "$d"/libcudnn.so.* >/dev/null 2>&1 && echo "$d"; done | head -n1)"
  [[ -n "$CUDNN_LIB" ]] || die "libcudnn.so.* not found in the cudnn wheel"
  link_lib libcudnn "$CUDNN_LIB"
fi

# Stub driver library: every cu* symbol cudarc's driver bindings can reference, each returning
# 34 = CUDA_ERROR_STUB_LIBRARY. Symbol list taken from cudarc's own sources (the extern "C"
# declarations used by its `dynamic-linking` mode), so it matches the cudarc actually built.
STUB_C="$HOME_DIR/libcuda_stub.c"
STUB_SO="$HOME_DIR/lib/libcuda.so"
CUDARC_SYS="${CUDARC_SYS:-}"
if [[ -z "$CUDARC_SYS" ]]; then
  # Ask cargo where the cudarc of this repository's lock file is: `cargo metadata` downloads the
  # packages it does not have yet (no separate `cargo fetch` needed) and names each manifest.
  CARGO="${CARGO:-$(command -v cargo || echo "$HOME/.cargo/bin/cargo")}"
  [[ -x "$CARGO" ]] || die "cargo not found (on PATH or in ~/.cargo/bin): run packaging/setup.sh first"
  log "locating cudarc's sources with cargo metadata (downloads the crates on first use)"
  META="$ROOT/cargo-metadata.json"
  "$CARGO" metadata --format-version 1 --locked --features cuda --manifest-path "$REPO/Cargo.toml" > "$META" \
    || die "cargo metadata failed (network? see its messages above)"
  CUDARC_DIR="$("$PYTHON" -c '
import json, os, sys
pkgs = [p for p in json.load(open(sys.argv[1]))["packages"] if p["name"] == "cudarc"]
if len(pkgs) == 1:
    print(pkgs[0]["version"], os.path.dirname(pkgs[0]["manifest_path"]))
' "$META")"
  [[ -n "$CUDARC_DIR" ]] || die "cargo metadata --features cuda lists no single cudarc package"
  log "cudarc ${CUDARC_DIR%% *}"
  CUDARC_SYS="${CUDARC_DIR#* }/src/driver/sys/mod.rs"
fi
[[ -f "$CUDARC_SYS" ]] || die "$CUDARC_SYS not found (cudarc's source layout changed? or set CUDARC_SYS=/path/to/cudarc/src/driver/sys/mod.rs)"

if [[ ! -f "$STUB_SO" || ! -f "$STUB_C" || "$CUDARC_SYS" -nt "$STUB_C" || "${BASH_SOURCE[0]}" -nt "$STUB_C" ]]; then
  log "building stub libcuda.so from symbols in $CUDARC_SYS"
  SYMS="$(grep -oE '^[[:space:]]*fn cu[A-Za-z0-9_]*\(' "$CUDARC_SYS" | sed -E 's/^[[:space:]]*fn //; s/\($//' | sort -u)"
  n="$(printf '%s\n' "$SYMS" | grep -c . || true)"
  (( n > 100 )) || die "found only $n cu* symbols in $CUDARC_SYS; cudarc source layout changed?"
  {
    echo "/* Generated by setup-cuda-build.sh: link-time stand-in for the NVIDIA driver library."
    echo " * Every entry point returns 34 = CUDA_ERROR_STUB_LIBRARY. Never load this at run time. */"
    echo "#define STUB(name) int name(void) { return 34; }"
    printf 'STUB(%s)\n' $SYMS
  } > "$STUB_C.tmp"
  mv "$STUB_C.tmp" "$STUB_C"
  # soname libcuda.so.1 like the real driver, so binaries record libcuda.so.1.
  cc -shared -fPIC -O1 -Wl,-soname,libcuda.so.1 -o "$STUB_SO.tmp" "$STUB_C"
  mv "$STUB_SO.tmp" "$STUB_SO"
  log "stub libcuda.so: $n symbols"
fi
# cudarc also searches $CUDA_HOME/lib/stubs; keep the stub there too for tools expecting it.
mkdir -p "$HOME_DIR/lib/stubs"
ln -sfn ../libcuda.so "$HOME_DIR/lib/stubs/libcuda.so"

# ---------------------------------------------------------------- 3. env.sh
cat > "$ROOT/env.sh" <<EOF
# Generated by setup-cuda-build.sh. Source before: cargo build --release --features cuda
# Build-time only. Do not use home/lib (stub libcuda) as LD_LIBRARY_PATH on a GPU machine.
export CUDA_HOME="$HOME_DIR"
export CUDA_PATH="$HOME_DIR"
export PATH="$HOME_DIR/bin:$CU13/nvvm/bin:\$PATH"
export LIBRARY_PATH="$HOME_DIR/lib\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
# sm_90 (H100/H200). candle-kernels' precompiled kernels run on this compute capability only.
export CUDA_COMPUTE_CAP="\${CUDA_COMPUTE_CAP:-90}"
# cudaforge's parallel nvcc jobs (2 cores here).
export CUDAFORGE_THREADS="\${CUDAFORGE_THREADS:-2}"
EOF
log "done. Now: source $ROOT/env.sh && cargo build --release --features cuda"
