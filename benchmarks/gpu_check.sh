#!/usr/bin/env bash
# One prepared check of a GPU machine in under 8 minutes (sized for one H200, 16 cores), written
# as one JSON: the CUDA-marked tests, the training step fp32 / bf16 / torch.compile, the data
# path with the images resident on the device, and a short paper-config run (and a small
# evaluation) on the full synthetic Shapes3D grid (480,000 images, 64 px) rendered here.
#
#   bash benchmarks/gpu_check.sh [--out FILE] [--work DIR] [--budget SECONDS]
#   bash benchmarks/gpu_check.sh --dry-run      # CPU, tiny sizes, ~1-2 min; CUDA-only parts skipped
#
# --out: the JSON (default $OUT/gpu_check.json when $OUT is set, else ./gpu_check.json); each
# part's log goes to <out>_logs/. Every part has its own time limit, cut to what is left of the
# budget (default 470 s), so the whole fits; a part that fails or times out is recorded as such
# and the rest still run. The JSON is rewritten after every part.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD

DRY=0
OUT_JSON="${OUT:+$OUT/gpu_check.json}"
OUT_JSON="${OUT_JSON:-$PWD/gpu_check.json}"
WORK=""
BUDGET=470
while (($#)); do
    case "$1" in
        --dry-run) DRY=1 ;;
        --out) OUT_JSON=$2; shift ;;
        --work) WORK=$2; shift ;;
        --budget) BUDGET=$2; shift ;;
        *) echo "usage: bash benchmarks/gpu_check.sh [--dry-run] [--out FILE] [--work DIR] [--budget S]" >&2
           exit 2 ;;
    esac
    shift
done
WORK=${WORK:-$(mktemp -d /tmp/vct_gpu_check.XXXXXX)}
LOGS="${OUT_JSON%.json}_logs"
RESULTS="$WORK/results"
mkdir -p "$WORK" "$LOGS" "$RESULTS" "$(dirname "$OUT_JSON")"
START=$(date +%s)
DEADLINE=$((START + BUDGET))
export PYTHONUNBUFFERED=1
if ((DRY)); then DEVICE=cpu; else DEVICE=cuda; fi
DATA="$WORK/bench_data/full64"   # bench_data.py's own full-grid folder, shared with the run
RUN="$WORK/paper_run"

python - "$OUT_JSON" "$DRY" "$DEVICE" "$BUDGET" "$WORK" <<'PY'
import json, sys
out, dry, device, budget, work = sys.argv[1:]
json.dump({"dry_run": dry == "1", "device": device, "budget_s": int(budget), "work_dir": work,
           "parts": {}}, open(out, "w"), indent=2)
PY

# record NAME [RESULT_FILE]: the last part's STATUS / RC / SECONDS / NOTE, its result (a JSON
# file, or a junit XML's counts) and its log's tail, into the JSON.
record() {
    python - "$OUT_JSON" "$1" "$STATUS" "$RC" "$SECONDS_TAKEN" "$NOTE" "${2:-}" "$LOGS/$1.log" \
        "$(($(date +%s) - START))" <<'PY'
import json, os, sys
out, name, status, rc, seconds, note, result, log, elapsed = sys.argv[1:]
report = json.load(open(out))
part = {"status": status, "rc": None if rc == "" else int(rc), "seconds": float(seconds or 0)}
if note:
    part["note"] = note
if result and os.path.isfile(result) and os.path.getsize(result):
    if result.endswith(".xml"):
        import xml.etree.ElementTree as ET
        suites = ET.parse(result).getroot()
        suites = [suites] if suites.tag == "testsuite" else list(suites)
        part["result"] = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    else:
        try:
            part["result"] = json.load(open(result))
        except ValueError as error:
            part["result_error"] = f"{result}: {error}"
if status != "ok" and os.path.isfile(log):
    part["log_tail"] = open(log, errors="replace").read()[-1500:]
report["parts"][name] = part
report["elapsed_s"] = int(elapsed)
json.dump(report, open(out, "w"), indent=2)
PY
}

# run_part NAME LIMIT_S CMD...: run CMD under min(LIMIT_S, what is left of the budget).
run_part() {
    local name=$1 limit=$2 left
    shift 2
    left=$((DEADLINE - $(date +%s) - 5))
    NOTE=""
    if ((left < 20)); then
        STATUS=skipped RC="" SECONDS_TAKEN=0 NOTE="no time left in the ${BUDGET} s budget"
        return
    fi
    ((limit > left)) && limit=$left && NOTE="limit cut to ${left} s by the budget"
    local t0=$EPOCHREALTIME
    echo "[$(($(date +%s) - START)) s] $name (limit ${limit} s)" >&2
    timeout --kill-after=10 "$limit" "$@" >"$LOGS/$name.log" 2>&1
    RC=$?
    SECONDS_TAKEN=$(awk "BEGIN {printf \"%.1f\", $EPOCHREALTIME - $t0}")
    if ((RC == 0)); then STATUS=ok; elif ((RC == 124 || RC == 137)); then STATUS=timeout; else STATUS=failed; fi
}

skip_part() {  # NAME NOTE
    STATUS=skipped RC="" SECONDS_TAKEN=0 NOTE=$2
    record "$1"
}

# --- the data, rendered in the background while the GPU parts run ------------------------------
if ((DRY)); then
    RENDER_ARGS=(--size 32 --factors 2,2,2,1,2,2)
else
    RENDER_ARGS=(--size 64)   # the full grid: 480,000 images, 5.9 GB
fi
RENDER_T0=$EPOCHREALTIME
(
    timeout --kill-after=10 $((BUDGET - 120)) python -m datasets.synthetic shapes3d --out "$DATA" \
        "${RENDER_ARGS[@]}" >"$LOGS/render.log" 2>&1
    rc=$?
    echo "$EPOCHREALTIME" >"$WORK/render.end"
    exit $rc
) &
RENDER_PID=$!

# --- environment ----------------------------------------------------------------------------------
run_part environment 60 python - "$RESULTS/environment.json" <<'PY'
import json, os, platform, subprocess, sys
import torch
info = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
        "cuda_available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda}
if torch.cuda.is_available():
    props = torch.cuda.get_device_properties(0)
    info.update(gpu=props.name, gpu_memory_gb=props.total_memory / 2**30, capability=f"{props.major}.{props.minor}",
                gpus=torch.cuda.device_count(), bf16=torch.cuda.is_bf16_supported())
commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
info["git_commit"] = commit.stdout.strip() or None
json.dump(info, open(sys.argv[1], "w"), indent=2)
PY
record environment "$RESULTS/environment.json"

# --- the CUDA-marked tests (skipped, and so reported, without CUDA) --------------------------------
mapfile -t CUDA_TESTS < <(grep -rlE "skipif\(.*cuda|needs_cuda" tests --include='test_*.py' | sort)
if ((${#CUDA_TESTS[@]})); then
    run_part cuda_tests 150 python -m pytest -q -rs -p no:cacheprovider -k cuda \
        --junitxml="$RESULTS/cuda_tests.xml" "${CUDA_TESTS[@]}"
    ((DRY)) && NOTE="CPU: the CUDA tests skip; ${NOTE}"
    NOTE="files: ${CUDA_TESTS[*]}${NOTE:+; $NOTE}"
    ((RC == 5)) && STATUS=ok NOTE="no test selected; $NOTE"  # pytest: nothing collected
    record cuda_tests "$RESULTS/cuda_tests.xml"
else
    skip_part cuda_tests "no CUDA-marked tests found"
fi

# --- the training step: fp32 vs bf16, then torch.compile ------------------------------------------
if ((DRY)); then
    run_part train_step 120 python benchmarks/bench_train_step.py --configs toy --variants optimised \
        --precision fp32 --steps 1 --warmup 0 --device cpu --threads 1 --json "$RESULTS/train_step.json"
    record train_step "$RESULTS/train_step.json"
    skip_part train_step_compiled "CUDA only here: torch.compile of the step takes minutes on a CPU"
else
    run_part train_step 150 python benchmarks/bench_train_step.py --configs paper toy --variants optimised \
        --precision fp32 bf16 --steps 10 --warmup 2 --device cuda --json "$RESULTS/train_step.json"
    record train_step "$RESULTS/train_step.json"
    run_part train_step_compiled 150 python benchmarks/bench_train_step.py --configs paper \
        --variants optimised compiled --precision bf16 --steps 5 --warmup 3 --device cuda \
        --json "$RESULTS/train_step_compiled.json"
    record train_step_compiled "$RESULTS/train_step_compiled.json"
fi

# --- wait for the data ----------------------------------------------------------------------------
wait "$RENDER_PID"
RC=$?
SECONDS_TAKEN=$(awk "BEGIN {printf \"%.1f\", $(cat "$WORK/render.end" 2>/dev/null || echo "$EPOCHREALTIME") - $RENDER_T0}")
NOTE="python -m datasets.synthetic shapes3d ${RENDER_ARGS[*]} (in the background from the start)"
if ((RC == 0)); then STATUS=ok; elif ((RC == 124 || RC == 137)); then STATUS=timeout; else STATUS=failed; fi
record render

# --- the data path: images/s handed to the step, read from the h5 vs resident ----------------------
if ((DRY)); then
    run_part data 90 python benchmarks/bench_data.py --dry-run --work-dir "$WORK/bench_data_dry" \
        --device cpu --json "$RESULTS/data.json"
else
    run_part data 120 python benchmarks/bench_data.py --parts resident --work-dir "$WORK/bench_data" \
        --device cuda --seconds 3 --json "$RESULTS/data.json"
fi
record data "$RESULTS/data.json"

# --- a short paper-config run on the synthetic grid (the toy config, tiny, in a dry run) -----------
if ((DRY)); then
    RUN_ARGS=(--config toy_ce.gin --max_steps 2 --device cpu
              --gin_bindings "make_synthetic_shapes3d.factor_sizes = [2, 2, 2, 1, 2, 2]"
              --gin_bindings "get_args.batch_size = 8" --gin_bindings "get_args.vqvae_max_steps = 2")
    EVAL_ARGS=(--device cpu)
else
    RUN_ARGS=(--config shapes3d_ce.gin --max_steps 300 --device cuda
              --gin_bindings "get_args.name = 'synthetic_shapes3d'"
              --gin_bindings "make_synthetic_shapes3d.size = 64"
              --gin_bindings "get_args.train_vqvae_if_missing = True"
              --gin_bindings "get_args.vqvae_max_steps = 100" --gin_bindings "get_args.log_interval = 20")
    EVAL_ARGS=(--device cuda --gin_bindings "evaluation.batch_size = 1024"
               --gin_bindings "evaluation.num_fit = 20000")
fi
run_part paper_run 200 python main_vct.py "${RUN_ARGS[@]}" --out "$RUN" \
    --gin_bindings "get_args.data_dir = '$DATA'" --gin_bindings "get_args.vqvae_path = '$WORK/vqvae/vqvae.pt'" \
    --gin_bindings "get_args.save_interval = 100000" --gin_bindings "get_args.evaluate_at_end = False"
python - "$RUN" "$LOGS/paper_run.log" "$RESULTS/paper_run.json" <<'PY' || true
import json, statistics, sys
from training.run_log import read_scalars
run, log, out = sys.argv[1:]
scalars = read_scalars(run) if __import__("os").path.isdir(run) else {}
summary = {"steps_logged": sorted(scalars)[-1] if scalars else 0,
           "placement": [line.strip() for line in open(log, errors="replace") if line.startswith("data: ")]}
if scalars:
    last = scalars[max(scalars)]
    summary["last"] = {k: last[k] for k in ("loss", "im_loss", "dis_loss", "images_per_s", "data_wait_fraction",
                                            "peak_gpu_memory_gb", "peak_rss_gb") if k in last}
    rates = [scalars[s]["images_per_s"] for s in sorted(scalars)[1:]]
    if rates:
        summary["median_images_per_s"] = statistics.median(rates)
        summary["median_data_wait_fraction"] = statistics.median(
            scalars[s]["data_wait_fraction"] for s in sorted(scalars)[1:])
json.dump(summary, open(out, "w"), indent=2)
PY
record paper_run "$RESULTS/paper_run.json"

# --- a small evaluation of that run (MIG only) ----------------------------------------------------
if [ -d "$RUN/checkpoints" ]; then
    run_part paper_eval 120 python evaluate.py --checkpoint "$RUN" --metrics mig --out "$RESULTS/paper_eval.json" \
        "${EVAL_ARGS[@]}"
    record paper_eval "$RESULTS/paper_eval.json"
else
    skip_part paper_eval "the run left no checkpoint"
fi

python - "$OUT_JSON" "$(($(date +%s) - START))" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
report["elapsed_s"] = int(sys.argv[2])
report["all_ok"] = all(p["status"] in ("ok", "skipped") for p in report["parts"].values())
json.dump(report, open(sys.argv[1], "w"), indent=2)
print(json.dumps({name: p["status"] for name, p in report["parts"].items()}), f"{report['elapsed_s']} s",
      f"-> {sys.argv[1]}")
PY
