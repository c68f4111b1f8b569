#!/usr/bin/env bash
# Builds kiln with the CUDA backend (build-cuda/) and gathers what a GPU
# machine without kiln's build dependencies needs into .carry/dist: the kiln
# CLI, the unit-test binary, the example plugin, and the shared libraries they
# link that are not part of the CUDA/cuDNN runtime, packed as .carry/dist.tar.xz.
# On the GPU machine, from the repository root:
#   source scripts/device_env.sh   (unpacks it; puts it and cuDNN/cuBLAS on the loader path)
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DKILN_CUDA=ON >/dev/null
cmake --build build-cuda -j"$(nproc)" --target kiln_cli kiln_tests kiln_example_plugin
rm -rf .carry/dist && mkdir -p .carry/dist
cp build-cuda/kiln build-cuda/tests/kiln_tests .carry/dist/
cp build-cuda/examples/identity_plugin/*.so .carry/dist/ 2>/dev/null || true
# Non-system libraries: everything ldd resolves outside libc/libstdc++ and the CUDA stack.
ldd build-cuda/kiln build-cuda/tests/kiln_tests | awk '/=> \//{print $3}' | sort -u |
  grep -Ev '/(libc|libm|libdl|libpthread|librt|libgcc_s|libstdc\+\+|ld-linux[^/]*|libcuda|libcudart|libcudnn[^/]*|libcublas[^/]*)\.so' |
  while read -r lib; do cp -L "$lib" .carry/dist/; done
strip --strip-unneeded .carry/dist/* 2>/dev/null || true
# The tree that travels to a GPU machine is size-limited: ship one archive.
tar -C .carry -cJf .carry/dist.tar.xz dist
rm -rf .carry/dist
du -sh .carry/dist.tar.xz
