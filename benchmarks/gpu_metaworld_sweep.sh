#!/usr/bin/env bash
# Meta-World state variants trained on a GPU machine without network access, evaluated closed loop on its CPUs.
#
#   bash benchmarks/gpu_metaworld_sweep.sh VARIANTS.json SHARDS.tgz
#
# Prepared here (carried to the machine, all ignored by git):
#   .whl      bash benchmarks/gpu_wheels.sh .whl    (draccus, webdataset and their needs), plus gymnasium,
#             farama-notifications, mujoco, glfw, pyopengl, importlib-resources from `gpu_wheels.sh --metaworld`
#   .mwpkg    the metaworld package unpacked from its wheel (its textures shrunk: state-only runs never render,
#             and the wheel alone is over half of what a device call may carry)
#   .gl       libegl1 and the other glvnd debs (apt-get download), unpacked there for MuJoCo's EGL
#   .mwruns   optional: run_<name>.tgz files an earlier call returned
#   SHARDS.tgz  tar czf of the shards folder written by the preprocessing job (manifest.jsonl inside)
# Results under $OUT: sweep.log, sweep.json, and per variant run_<name>.tgz (configs + EMA weights) for
# evaluating again here.
set -uo pipefail
variants=$1
shards_tgz=$2
OUT=${OUT:-./gpu_sweep_out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
# EGL for MuJoCo (imported even when nothing renders): the NVIDIA driver's, through glvnd debs carried in .gl.
if [ -d .gl ]; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
    export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
fi
# Runs trained by an earlier call (run_<name>.tgz from its $OUT) are evaluated, not trained again.
mkdir -p /tmp/mw_sweep/runs
for f in .mwruns/run_*.tgz; do [ -f "$f" ] && tar xzf "$f" -C /tmp/mw_sweep/runs; done
export PYTHONPATH=$PWD/.mwpkg:/tmp/site:$PWD PYTHONUNBUFFERED=1 MUJOCO_GL=egl
mkdir -p /tmp/mw && tar xzf "$shards_tgz" -C /tmp/mw || exit 1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 benchmarks/metaworld_sweep.py --shards /tmp/mw/shards --variants "$variants" --device cuda \
    --workdir /tmp/mw_sweep "${@:3}" 2>&1 | tee "$OUT/sweep.log"
cp /tmp/mw_sweep/sweep.json "$OUT/" 2>/dev/null
tar czf "$OUT/eval.tgz" -C /tmp/mw_sweep eval logs
for run in /tmp/mw_sweep/runs/*/; do
    name=$(basename "$run")
    # Exported EMA weights when the run finished; its checkpoints when it was stopped first.
    if [ -f "$run/ema.safetensors" ]; then skip=(--exclude checkpoints --exclude model.safetensors); else skip=(); fi
    tar czf "$OUT/run_$name.tgz" -C /tmp/mw_sweep/runs "${skip[@]}" "$name"
done
ls -la "$OUT"
