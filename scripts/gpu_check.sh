#!/usr/bin/env bash
# The GPU check in one command, for one call of at most 8 minutes on one H200 (see the GPU
# section of benchmarks/README.md for the estimate): install the wheels, versions and the
# device with a DLPack check, `pytest -m gpu`, a bert-base-shaped random encoder,
# configs/trf.cfg trained with mixed precision at n_passes = 1 and 2 (steady-state words/s,
# the loss at each step, peak GPU memory, the CRF's share of a step apart from building
# the gold tags, steps skipped for loss-scale overflow and the final scale), inference
# words/s with nlp.pipe at three batch sizes, and a table printed last.
#
# Each stage runs under a time limit (and all of them under one deadline), its output
# teed into a log of its own in the out dir, and merges its part into the JSON at once,
# so a run cut off or a failed stage still leaves what was measured and why it failed.
# Files in the out dir: gpu_check.json and setup.log, gpu_tests.log, train_n1.log,
# train_n2.log, infer.log (6 of the 8 files a device call brings back). The exit status
# is 1 when a stage failed, 2 when there is no data to measure on.
#
# Before, on a machine with network, from the repository root: scripts/gpu_prepare.sh
# (lays .whl and .gpu-data, and prints the device command and what to carry). Then on the
# GPU machine:
#   set -o pipefail; PYTHONUNBUFFERED=1 scripts/gpu_check.sh 2>&1 | tee $OUT/gpu_check.log
#
# Settings (environment):
#   GPU_ID (0; -1 runs on the CPU, without mixed precision, whose scaler needs CUDA)
#   DATA (GPU_DATA_DIR/dev.txt; GPU_DATA_DIR is .gpu-data). With GPU_ID >= 0 and no data
#     the check stops; with GPU_ID=-1 it falls back to assets/sample.bio and says so.
#   ENCODER_SIZE (base; tiny for tests), STEPS (120), N_PASSES ("1 2"),
#   TRAIN_SECONDS (45: the longest timed window of a training stage),
#   BATCH_SIZES ("32 128 512"), INFER_WORDS (30000), INFER_SECONDS (12 per batch size),
#   LOSS_SCALE (1024: the gradient scaler's initial scale; thinc's default is 65536),
#   BUDGET (450 s: the deadline of all stages), T_INSTALL T_ENV T_ENCODER T_CONVERT
#   T_GPU_TESTS T_TRAIN T_INFER (each stage's own limit in seconds),
#   OUT (the out dir; .bench/gpu_check when unset), RESULT (OUT/gpu_check.json),
#   SKIP_INSTALL (set: use what is installed), PYTHON (python3),
#   CPU_GRAD_SCALER (tests, GPU_ID=-1: run the loss scaler on the CPU),
#   FAIL_STAGE (tests: a stage name, made to fail as if its command had).
# The encoder has random weights: its speed is a real bert-base's, its accuracy is nil.
set -uo pipefail
gpu=${GPU_ID:-0}
py=${PYTHON:-python3}
out_dir=${OUT:-.bench/gpu_check}
mkdir -p "$out_dir"
result=${RESULT:-$out_dir/gpu_check.json}
data_dir=${GPU_DATA_DIR:-.gpu-data}
deadline=$((SECONDS + ${BUDGET:-450}))
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
# The source first, so that what is measured is this tree; the wheels' site after it.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
rm -f "$result" "$out_dir"/{setup,gpu_tests,train_n*,infer}.log
failed=()

bench() { "$py" scripts/gpu_bench.py "$@"; }
# note KEY TEXT: a string into the JSON (no package needed, only Python).
note() {
  "$py" -c 'import json, sys; print(json.dumps(sys.argv[1]))' "$2" >"$work/v.json" &&
    bench record "$result" "$1" "$(cat "$work/v.json")"
}
say() { echo "== $* ($(date +%T))"; }

# step LOG NAME LIMIT CMD...: run CMD under min(LIMIT, time left) with its output teed into
# OUT/LOG.log; on failure record {status: FAILED, ...} with the log's end under NAME.
step() {
  local log="$out_dir/$1.log" name=$2 limit=$3 start=$SECONDS rc left
  shift 3
  left=$((deadline - SECONDS - 10))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 5 ]; then
    say "$name: skipped, out of time" | tee -a "$log"
    fail "$name" 124 "skipped: the deadline (BUDGET) was reached" "$log"
    return 124
  fi
  say "$name (limit ${limit}s)" | tee -a "$log"
  if [ "${FAIL_STAGE:-}" = "$name" ]; then
    set -- "$py" -c "raise SystemExit('made to fail by FAIL_STAGE=$name')"
  fi
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$log"
  rc=${PIPESTATUS[0]}
  bench record "$result" "stage_seconds.$name" "$((SECONDS - start))"
  if [ "$rc" -ne 0 ]; then
    local why="exit $rc"
    [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && why="timed out after ${limit}s"
    fail "$name" "$rc" "$why" "$log"
  fi
  return "$rc"
}
# fail NAME RC REASON LOG: record the failure, the log's name and its last lines.
fail() {
  failed+=("$1")
  "$py" - "$1" "$2" "$3" "$4" >"$work/f.json" <<'PY'
import json, os, sys
name, rc, reason, log = sys.argv[1:]
tail = open(log, errors="replace").read().splitlines()[-40:] if os.path.exists(log) else []
print(json.dumps({"status": "FAILED", "exit": int(rc), "reason": reason,
                  "log": os.path.basename(log), "log_tail": "\n".join(tail)}))
PY
  bench record "$result" "$1" "$(cat "$work/f.json")"
  bench record "$result" failed_stages "$("$py" -c 'import json,sys; print(json.dumps(sys.argv[1:]))' "${failed[@]}")"
}
finish() {
  bench record "$result" total_seconds "$SECONDS"
  say table
  bench table "$result"
  if [ ${#failed[@]} -gt 0 ]; then
    echo "failed stages: ${failed[*]} (logs and JSON in $out_dir)"
    exit 1
  fi
  exit 0
}

# ---- data: the figures mean nothing on the sample file
data=${DATA:-}
if [ -z "$data" ] && [ -f "$data_dir/dev.txt" ]; then data=$data_dir/dev.txt; fi
if [ -z "$data" ]; then
  if [ "$gpu" -ge 0 ]; then
    msg="FAILED: no $data_dir/dev.txt and no DATA: run scripts/gpu_prepare.sh and carry $data_dir"
    echo "error: $msg" >&2
    note data "$msg"
    exit 2
  fi
  data=assets/sample.bio
  echo "WARNING: no $data_dir/dev.txt: falling back to $data (a few sentences): the figures mean nothing" >&2
  note data "$data (FALLBACK: no $data_dir/dev.txt; the figures mean nothing)"
elif [ ! -f "$data" ]; then
  note data "FAILED: $data does not exist"
  echo "error: DATA=$data does not exist" >&2
  exit 2
else
  note data "$data"
fi

# ---- setup: install, versions and device, encoder, corpus
if [ -z "${SKIP_INSTALL:-}" ] && [ -d .whl ]; then
  if step setup install "${T_INSTALL:-120}" "$py" -m pip install -q --no-index --no-deps \
    --no-compile --no-cache-dir --upgrade --target "$PWD/.gpu-site" .whl/*.whl; then
    export PYTHONPATH="$PWD:$PWD/.gpu-site${PYTHONPATH#"$PWD"}"
    note install "wheels from .whl into .gpu-site (after the source on PYTHONPATH)"
  else
    finish
  fi
elif [ -z "${SKIP_INSTALL:-}" ] && [ "$gpu" -ge 0 ]; then
  echo "WARNING: no .whl: using the packages installed here" >&2
  note install "skipped: no .whl; the packages installed here"
else
  note install "skipped: SKIP_INSTALL; the packages installed here"
fi
step setup env "${T_ENV:-60}" "$py" scripts/gpu_bench.py env "$result" --gpu-id "$gpu"
env_rc=$?
# 1: the package not from the source, or DLPack failed (both recorded): go on and see;
# 3: no device, 4: the packages do not import, 124: timed out: stop.
if [ "$env_rc" -ne 0 ] && [ "$env_rc" -ne 1 ]; then finish; fi
size=${ENCODER_SIZE:-base}
step setup encoder "${T_ENCODER:-120}" "$py" scripts/make_encoder.py "$work/encoder" \
  --size "$size" --text "$data" || finish
note encoder "random BERT, $size shape"
step setup convert "${T_CONVERT:-60}" "$py" -m spacy_ntk_ner convert "$data" "$work/corpus" \
  --split train=0.9,dev=0.1 --seed 0 --quiet || finish

# ---- the gpu tests
if [ "$gpu" -ge 0 ]; then
  step gpu_tests gpu_tests "${T_GPU_TESTS:-120}" "$py" -m pytest -m gpu tests -q -rfEs \
    -p no:cacheprovider
  rc=$?
  "$py" - "$out_dir/gpu_tests.log" "$rc" >"$work/t.json" <<'PY'
import json, sys
log, rc = sys.argv[1], int(sys.argv[2])
text = open(log, errors="replace").read()
lines = [x for x in text.splitlines() if x.strip()]
print(json.dumps({"result": lines[-1] if lines else "", "exit": rc, "log": text[-20000:]}))
PY
  bench record "$result" gpu_tests "$(cat "$work/t.json")"
else
  say "gpu tests: skipped, GPU_ID=-1" | tee "$out_dir/gpu_tests.log"
  note gpu_tests "skipped: GPU_ID=-1"
fi

# ---- training at each n_passes; inference on the model of the first that trained
scaler=()
[ -n "${CPU_GRAD_SCALER:-}" ] && scaler=(--cpu-grad-scaler)
# within_deadline SECONDS RESERVE: SECONDS, or less so that RESERVE seconds are left
# before the deadline for a stage's start-up and end (at least 5).
within_deadline() {
  local left=$((deadline - SECONDS - 10 - $2))
  [ "$left" -lt "$1" ] && echo $((left > 5 ? left : 5)) || echo "$1"
}
for n in ${N_PASSES:-1 2}; do
  save=()
  [ -d "$work/model" ] || save=(--save "$work/model")
  step "train_n$n" "train_n$n" "${T_TRAIN:-110}" "$py" scripts/gpu_bench.py train "$result" \
    "$work/corpus" "$work/encoder" --n-passes "$n" --steps "${STEPS:-120}" --gpu-id "$gpu" \
    --max-seconds "$(within_deadline "${TRAIN_SECONDS:-45}" 50)" \
    --init-scale "${LOSS_SCALE:-1024}" "${scaler[@]}" "${save[@]}"
done
if [ -d "$work/model" ]; then
  sizes=(${BATCH_SIZES:-32 128 512})
  per_size=$(within_deadline "$((${INFER_SECONDS:-12} * ${#sizes[@]}))" 30)
  step infer infer "${T_INFER:-90}" "$py" scripts/gpu_bench.py infer "$result" \
    "$work/corpus" "$work/model" --gpu-id "$gpu" --batch-sizes "${sizes[@]}" \
    --max-words "${INFER_WORDS:-30000}" --max-seconds "$((per_size / ${#sizes[@]}))"
else
  say "inference: skipped, no trained model" | tee "$out_dir/infer.log"
  fail infer 1 "skipped: no training stage saved a model" "$out_dir/infer.log"
fi
finish
