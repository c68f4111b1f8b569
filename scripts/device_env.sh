# Source on a GPU machine, from the repository root, before running binaries
# that scripts/device_bundle.sh gathered: puts .carry/dist and the machine's
# cuDNN / cuBLAS / CUDA runtime (from its Python venv, if that is where they
# live) on the loader path.
[ -d .carry/dist ] || [ ! -f .carry/dist.tar.xz ] || tar -C .carry -xJf .carry/dist.tar.xz
_kiln_nv=$(python3 - <<'P'
import glob, os, site
dirs = set()
for sp in site.getsitepackages():
    for pat in ("nvidia/**/libcudnn.so*", "nvidia/**/libcublas*.so*", "nvidia/**/libcudart.so*"):
        dirs.update(os.path.dirname(p) for p in glob.glob(os.path.join(sp, pat), recursive=True))
print(":".join(sorted(dirs)))
P
)
export LD_LIBRARY_PATH="$PWD/.carry/dist${_kiln_nv:+:$_kiln_nv}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export KILN_BIN="$PWD/.carry/dist/kiln"
export KILN_EXAMPLE_PLUGIN="$PWD/.carry/dist/libkiln_example_plugin.so"
unset _kiln_nv
