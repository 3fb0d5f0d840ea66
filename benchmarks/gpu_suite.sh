#!/usr/bin/env bash
# The GPU proof in one command: CUDA tests and the GPU figures, each stage under its own time limit, results as JSON.
#
#   bash benchmarks/gpu_suite.sh                # on a GPU machine (one H200: under 8 minutes in all)
#   bash benchmarks/gpu_suite.sh --cpu_smoke    # here, without a GPU: every stage with tiny sizes on the CPU
#
# Stages (GPU_SUITE_STAGES, in this order by default; a failed or stopped stage does not stop the next):
#   preflight   Python, torch, CUDA, the GPU's name, and the imports and torch APIs the other stages need
#   mfu         benchmarks/bench_gpu_mfu.py: transformer_1b, bf16 FSDP2, seq 2048, eager and torch.compile
#   checkpoint  benchmarks/bench_checkpoint.py --nproc 1: training time blocked per async save / sync save time
#   vla         benchmarks/bench_gpu_vla.py: VLA samples/s (vla_100m preset, SmolVLM-256M-sized backbone from a
#               config) and the robotics loader's data-wait fraction at the GPU's pace
#   pytest      pytest -m gpu tests/gpu: precision modes, FSDP2 + DCP + bitwise resume, compile, KV cache, Policy
#   metaworld   HOOK, see below; skipped unless GPU_SUITE_METAWORLD_CMD is set
#
# Output, all under $OUT (default ./gpu_suite_out): results.json (every stage's status and figures, and a summary),
# suite.log (every stage's output), pytest.xml (JUnit). A summary is printed last; the exit status is 1 when any
# stage failed or was stopped.
#
# Environment:
#   OUT                  results folder (the device tool sets it; created if missing)
#   GPU_SUITE_BUDGET_S   seconds for the whole suite (default 460 on GPU, 3600 for --cpu_smoke); each stage's limit
#                        is cut to what is left, and a stage with under 15 s left is skipped (said so in results)
#   GPU_SUITE_LIMIT_SCALE  --cpu_smoke only: factor on the stage limits (default 8: a busy 2-core machine)
#   GPU_SUITE_STAGES     stages to run, e.g. "mfu pytest" to rerun two of them
#   MFU_BATCH            per-GPU batch of the MFU stage (default 8 sequences of 2048 tokens)
#   PYTHON               the interpreter (default: python3 on GPU; .venv/bin/python for --cpu_smoke)
#
# Packages: on the GPU image, python3 holds torch and most dependencies; the few it lacks travel as wheels in .whl
# (benchmarks/gpu_wheels.sh downloads them here; name .whl in the device call's carry). They are installed into
# /tmp/site, and the repository runs from source (PYTHONPATH).
#
# Meta-World HOOK: set GPU_SUITE_METAWORLD_CMD to a shell command that trains and evaluates the pixel MT10 policy,
# e.g. GPU_SUITE_METAWORLD_CMD='bash <a script of the Meta-World work>'. It runs last, in the repository root, with
#   GPU_SUITE_STAGE_SECONDS  the seconds it may use (the budget that is left, minus 20 s for the summary)
#   GPU_SUITE_STAGE_JSON     a path: write the figures there (e.g. {"success": {...}, "train_steps": N}) and the
#                            suite folds them into results.json
#   GPU_SUITE_OUT_DIR        $OUT/metaworld, for at most 4 small files of its own (the device returns 8 in all)
# The Meta-World wheels come with `bash benchmarks/gpu_wheels.sh --metaworld`; rendering takes MUJOCO_GL=egl (the
# command sets it, with whatever EGL libraries the device needs).

set -uo pipefail
# The whole script is one brace group, read before it runs: editing the file during a run cannot change it.
{
mode=gpu
for arg in "$@"; do
    case "$arg" in
        --cpu_smoke) mode=cpu_smoke ;;
        -h | --help) sed -n '2,40p' "$0"; exit 0 ;;
        *) echo "gpu_suite.sh: unknown argument $arg (valid: --cpu_smoke, --help)" >&2; exit 2 ;;
    esac
done

cd "$(dirname "$0")/.."
REPO=$PWD
OUT=${OUT:-$REPO/gpu_suite_out}
mkdir -p "$OUT"
LOG=$OUT/suite.log
: >"$LOG"
WORK=$(mktemp -d /tmp/gpu_suite.XXXXXX)
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false

if [ "$mode" = gpu ]; then
    PYTHON=${PYTHON:-python3}
    BUDGET=${GPU_SUITE_BUDGET_S:-460}
    SCALE=1
    if compgen -G ".whl/*.whl" >/dev/null; then
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
            .whl/*.whl >>"$LOG" 2>&1 || echo "gpu_suite: installing .whl/*.whl failed (see suite.log)"
        export PYTHONPATH=/tmp/site:$REPO${PYTHONPATH:+:$PYTHONPATH}
    else
        export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
    fi
else
    PYTHON=${PYTHON:-$REPO/.venv/bin/python}
    BUDGET=${GPU_SUITE_BUDGET_S:-3600}
    # A shared 2-core machine imports torch in half a minute: the stage limits stretch accordingly.
    SCALE=${GPU_SUITE_LIMIT_SCALE:-8}
    export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH} VLA_FOUNDRY_TEST_DEVICE=cpu OMP_NUM_THREADS=1
fi
STAGES=${GPU_SUITE_STAGES:-preflight mfu checkpoint vla pytest metaworld}
START=$(date +%s)
DEADLINE=$((START + BUDGET))

# run_stage NAME LIMIT_S CMD...: runs CMD (output to suite.log and stdout) under min(LIMIT_S, budget left) and
# records {rc, seconds, limit_s, timed_out} in $WORK/NAME.status.json; CMD may write $WORK/NAME.json.
run_stage() {
    local name=$1 limit=$(($2 * SCALE))
    shift 2
    local left=$((DEADLINE - $(date +%s)))
    ((limit > left)) && limit=$left
    if ((limit < 15)); then
        echo "=== $name: skipped, ${left}s of the budget left" | tee -a "$LOG"
        printf '{"skipped": "only %ss of the %ss budget left"}\n' "$left" "$BUDGET" >"$WORK/$name.status.json"
        return
    fi
    echo "=== $name (limit ${limit}s) $(date -u +%H:%M:%S)" | tee -a "$LOG"
    local t0=$(date +%s)
    # The stage runs in a child bash (exported functions), so that timeout can stop it and everything it started.
    timeout --kill-after=10 "$limit" bash -c '"$@"' stage "$@" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    local seconds=$(($(date +%s) - t0))
    local timed_out=false
    ((rc == 124 || rc == 137)) && timed_out=true
    printf '{"rc": %d, "seconds": %d, "limit_s": %d, "timed_out": %s}\n' "$rc" "$seconds" "$limit" "$timed_out" \
        >"$WORK/$name.status.json"
    echo "=== $name: rc $rc after ${seconds}s" | tee -a "$LOG"
}

stage_preflight() {
    "$PYTHON" - "$WORK/preflight.json" <<'EOF'
import importlib, inspect, json, platform, sys
import torch
out = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
       "cuda_available": torch.cuda.is_available(), "missing": []}
if torch.cuda.is_available():
    props = torch.cuda.get_device_properties(0)
    out.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1), sms=props.multi_processor_count)
for name in ["draccus", "webdataset", "transformers", "timm", "tokenizers", "safetensors", "PIL", "pyarrow", "yaml",
             "pytest", "pytest_timeout", "vla_foundry.training_run", "vla_foundry.checkpoint"]:
    try:
        importlib.import_module(name)
    except Exception as e:
        out["missing"].append(f"{name}: {type(e).__name__}: {e}")
# torch APIs the training, checkpoint and compile paths call (present in the lock's torch; checked on this one).
from torch.distributed.checkpoint import async_save
params = inspect.signature(async_save).parameters
out["dcp_async_save_args_ok"] = all(k in params for k in ("async_stager", "no_dist", "process_group"))
try:
    from torch.distributed.checkpoint.staging import DefaultStager, StagingOptions  # noqa: F401
    out["dcp_default_stager"] = True
except ImportError as e:
    out["dcp_default_stager"] = f"{e}"
out["get_total_norm"] = hasattr(torch.nn.utils, "get_total_norm")
out["sdpa_enable_gqa"] = "enable_gqa" in (torch.nn.functional.scaled_dot_product_attention.__doc__ or "")
if torch.cuda.is_available():
    import time
    from torch.nn.attention import SDPBackend, sdpa_kernel
    # The attention the transformer presets use (bf16, causal, 2 query heads per key/value head, head dim 128):
    # which fused kernels take it, forward and backward (a fallback to the math kernel would sink the MFU).
    q = torch.randn(2, 16, 2048, 128, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    kv = torch.randn(2, 8, 2048, 128, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION):
        try:
            with sdpa_kernel([backend]):
                torch.nn.functional.scaled_dot_product_attention(q, kv, kv, is_causal=True, enable_gqa=True).sum().backward()
            out[f"sdpa_gqa_{backend.name.lower()}"] = True
        except Exception as e:
            out[f"sdpa_gqa_{backend.name.lower()}"] = f"{type(e).__name__}: {str(e)[:160]}"
    # The dense bf16 matmul rate of this GPU: the ceiling MFU figures can be read against (the datasheet's 989
    # TFLOP/s is what bench_gpu_mfu divides by).
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    out["bf16_matmul_tflops_8192"] = round(10 * 2 * 8192**3 / (time.perf_counter() - t0) / 1e12, 1)
json.dump(out, open(sys.argv[1], "w"), indent=1)
print(json.dumps(out, indent=1))
sys.exit(1 if out["missing"] or not out["dcp_async_save_args_ok"] else 0)
EOF
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm \
        --format=csv
    return 0
}

stage_mfu() {
    if [ "$mode" = gpu ]; then
        "$PYTHON" benchmarks/bench_gpu_mfu.py --per_gpu_batch_size "${MFU_BATCH:-8}" --seq_len 2048 --steps 20 \
            --warmup_steps 5 --json "$WORK/mfu.json"
    else
        "$PYTHON" benchmarks/bench_gpu_mfu.py --device cpu --model_preset config_presets/models/transformer_tiny.yaml \
            --per_gpu_batch_size 2 --seq_len 64 --steps 2 --warmup_steps 1 --json "$WORK/mfu.json"
    fi
}

stage_checkpoint() {
    if [ "$mode" = gpu ]; then
        "$PYTHON" benchmarks/bench_checkpoint.py --nproc 1 --repeats 3 --json "$WORK/checkpoint.json"
    else
        "$PYTHON" benchmarks/bench_checkpoint.py --nproc 1 --repeats 1 --hidden_dim 96 --n_layers 2 --vocab 256 \
            --json "$WORK/checkpoint.json"
    fi
}

stage_vla() {
    if [ "$mode" = gpu ]; then
        "$PYTHON" benchmarks/bench_gpu_vla.py --per_gpu_batch_size 32 --steps 10 --warmup_steps 3 \
            --loader_workers 12 --loader_steps 20 --image_size 224 --json "$WORK/vla.json"
    else
        "$PYTHON" benchmarks/bench_gpu_vla.py --device cpu --tiny --precision fp32 --per_gpu_batch_size 2 --steps 1 \
            --warmup_steps 1 --loader_workers 1 --loader_steps 2 --image_size 48 --json "$WORK/vla.json"
    fi
}

stage_pytest() {
    "$PYTHON" -m pytest -q -m gpu tests/gpu -p no:cacheprovider --timeout 150 --junitxml "$OUT/pytest.xml" -rfE
}

stage_metaworld() {
    # HOOK: the Meta-World pixel MT10 training + evaluation (10 episodes per task) goes here; see the header.
    mkdir -p "$OUT/metaworld"
    GPU_SUITE_STAGE_SECONDS=$1 GPU_SUITE_STAGE_JSON=$WORK/metaworld.json GPU_SUITE_OUT_DIR=$OUT/metaworld \
        bash -c "$GPU_SUITE_METAWORLD_CMD"
}

export -f stage_preflight stage_mfu stage_checkpoint stage_vla stage_pytest stage_metaworld
export mode PYTHON WORK OUT

for stage in $STAGES; do
    case "$stage" in
        preflight) run_stage preflight 60 stage_preflight ;;
        mfu) run_stage mfu 200 stage_mfu ;;
        checkpoint) run_stage checkpoint 90 stage_checkpoint ;;
        vla) run_stage vla 150 stage_vla ;;
        pytest) run_stage pytest 200 stage_pytest ;;
        metaworld)
            if [ -n "${GPU_SUITE_METAWORLD_CMD:-}" ]; then
                left=$((DEADLINE - $(date +%s) - 20))
                run_stage metaworld "$((left / SCALE))" stage_metaworld "$left"
            else
                echo '{"skipped": "GPU_SUITE_METAWORLD_CMD is not set"}' >"$WORK/metaworld.status.json"
            fi
            ;;
        *) echo "gpu_suite: unknown stage $stage (valid: preflight mfu checkpoint vla pytest metaworld)" | tee -a "$LOG" ;;
    esac
done

# results.json: every stage's status and figures, the pytest counts, and a summary of the headline figures.
"$PYTHON" - "$WORK" "$OUT" "$mode" "$START" "$STAGES" <<'EOF'
import datetime, json, os, sys
import xml.etree.ElementTree as ET
work, out, mode, start, stages = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5].split()

def read(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

results = {"mode": mode, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "seconds": int(datetime.datetime.now().timestamp()) - start, "stages": {}}
for name in stages:
    results["stages"][name] = {**(read(f"{work}/{name}.status.json") or {}), "figures": read(f"{work}/{name}.json")}
junit = os.path.join(out, "pytest.xml")
if os.path.exists(junit) and "pytest" in results["stages"]:
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    failed = [f"{c.get('classname')}::{c.get('name')}" for c in suite.iter("testcase")
              if c.find("failure") is not None or c.find("error") is not None]
    results["stages"]["pytest"]["figures"] = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    results["stages"]["pytest"]["figures"]["failed"] = failed

pre = results["stages"].get("preflight", {}).get("figures") or {}
summary = {"device": pre.get("gpu", "cpu"), "torch": pre.get("torch"),
           "bf16_matmul_tflops_8192": pre.get("bf16_matmul_tflops_8192")}
mfu = (results["stages"].get("mfu", {}).get("figures") or {}).get("results", [])
for r in mfu:
    summary[f"mfu_{r['mode']}"] = {k: r[k] for k in ("tokens_per_sec", "mfu", "step_s", "peak_mem_gib", "per_gpu_batch_size", "seq_len")}
ck = results["stages"].get("checkpoint", {}).get("figures")
if ck:
    summary["checkpoint_blocked_over_sync"] = ck["blocked_over_sync"]
vla = results["stages"].get("vla", {}).get("figures") or {}
for b in vla.get("backbones", []):
    summary[f"vla_{b['backbone']}"] = {k: b[k] for k in ("samples_per_sec", "step_s", "peak_mem_gib", "params_m") if k in b} or b
if vla.get("data_wait"):
    summary["robotics_loader_data_wait_fraction"] = vla["data_wait"]["data_wait_fraction"]
py = results["stages"].get("pytest", {}).get("figures")
if py:
    summary["pytest"] = {k: py[k] for k in ("tests", "failures", "errors", "skipped")}
mw = results["stages"].get("metaworld", {}).get("figures")
if mw:
    summary["metaworld"] = mw
results["summary"] = summary
with open(os.path.join(out, "results.json"), "w") as f:
    json.dump(results, f, indent=1)

print(f"\n===== gpu_suite ({mode}) on {summary['device']}, torch {summary['torch']}, {results['seconds']} s =====")
for name, st in results["stages"].items():
    if st.get("skipped"):
        state = f"skipped ({st['skipped']})"
    else:
        state = f"rc {st.get('rc')} in {st.get('seconds')} s" + (" TIMED OUT" if st.get("timed_out") else "")
    print(f"  {name:10s} {state}")
if pre.get("bf16_matmul_tflops_8192"):
    flash = {k[9:]: v for k, v in pre.items() if k.startswith("sdpa_gqa_")}
    print(f"  bf16 8192^3 matmul: {pre['bf16_matmul_tflops_8192']} TFLOP/s; GQA attention kernels: {flash}")
for r in mfu:
    pct = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
    print(f"  LM {r['params_m']:.0f}M {r['mode']:7s}: {r['tokens_per_sec']:,.0f} tokens/s, MFU {pct}, "
          f"{1000 * r['step_s']:.0f} ms/step, peak {r['peak_mem_gib']:.1f} GiB "
          f"(batch {r['per_gpu_batch_size']} x seq {r['seq_len']}, bf16 FSDP2)")
for b in vla.get("backbones", []):
    if "error" in b:
        print(f"  VLA {b['backbone']}: FAILED {b['error']}")
    else:
        print(f"  VLA {b['backbone']:9s}: {b['samples_per_sec']:.1f} samples/s, {1000 * b['step_s']:.0f} ms/step, "
              f"peak {b['peak_mem_gib']:.1f} GiB ({b['params_m']:.1f}M params)")
if vla.get("data_wait"):
    d = vla["data_wait"]
    print(f"  robotics loader data-wait fraction: {d['data_wait_fraction']:.3f} ({d['loader_workers']} workers, "
          f"{d['samples_per_sec']:.1f} samples/s)")
if ck:
    print(f"  checkpoint: async blocked {ck['async_blocked_s']:.3f} s / sync save {ck['sync_save_s']:.2f} s = "
          f"{ck['blocked_over_sync']:.3f} (target <= 0.05; {ck['state_gib']:.2f} GiB state)")
if py:
    print(f"  pytest -m gpu: {py['tests']} tests, {py['failures']} failures, {py['errors']} errors, {py['skipped']} skipped"
          + (f"; failed: {', '.join(py['failed'][:6])}" if py["failed"] else ""))
if mw:
    print(f"  metaworld: {json.dumps(mw)[:600]}")
print(f"results: {os.path.join(out, 'results.json')}")
sys.exit(1 if any(st.get("rc", 0) != 0 for st in results["stages"].values()) else 0)
EOF
status=$?
rm -rf "$WORK"
exit $status
}
