#!/usr/bin/env bash
# Download, here, the wheels that benchmarks/gpu_suite.sh installs on a GPU machine without network access.
#
#     bash benchmarks/gpu_wheels.sh [--metaworld] [DEST]      # DEST defaults to .whl (ignored by git)
#
# The GPU image brings its own Python 3.12 with torch, transformers, timm, tokenizers, safetensors, numpy, pillow,
# pyarrow, pyyaml, typing-inspect, pytest and pytest-timeout; the suite runs the repository from its source
# (PYTHONPATH) on that Python. What vla_foundry imports beyond those, for the training, checkpoint and loader paths
# the suite measures, is pure Python and listed here at the versions of uv.lock:
#   draccus (config parsing) + mergedeep, toml;  webdataset (shard writing) + braceexpand.
# --metaworld adds the simulation stack of the Meta-World stage (mujoco ships a manylinux binary wheel):
#   mujoco, metaworld, gymnasium, farama-notifications, glfw, pyopengl, importlib-resources.
# Not carried: ray (its wheel alone is larger than the 64 MiB a device call may carry), av, boto3, wandb; the suite
# needs none of them.
set -euo pipefail

metaworld=0
dest=.whl
for arg in "$@"; do
    case "$arg" in
        --metaworld) metaworld=1 ;;
        -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
        -*) echo "gpu_wheels.sh: unknown option $arg (valid: --metaworld, DEST)" >&2; exit 2 ;;
        *) dest=$arg ;;
    esac
done

wheels=(draccus==0.11.6 mergedeep==1.3.4 toml==0.10.2 webdataset==1.0.2 braceexpand==0.1.7)
if [ "$metaworld" = 1 ]; then
    wheels+=(mujoco==3.3.0 metaworld==3.1.1 gymnasium==1.4.0 farama-notifications==0.0.6 glfw==2.11.0
             pyopengl==3.1.10 importlib-resources==6.5.2)
fi

mkdir -p "$dest"
# The GPU machine: CPython 3.12 on x86-64 Linux. --no-deps: every dependency that the image lacks is named above.
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$dest" "${wheels[@]}"
ls -l "$dest"
du -sh "$dest"
