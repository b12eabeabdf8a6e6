#!/usr/bin/env bash
# The GPU check in one command (at most about 5 minutes on one H200): install, smoke tests,
# a bert-base-shaped random encoder, configs/trf.cfg trained with mixed precision for a
# fixed number of steps at n_passes = 1 and 2 (steady-state training words/s, peak GPU
# memory, the CRF's share of a step), inference words/s with nlp.pipe at a few batch
# sizes, and a table printed last. Each stage merges its part into $RESULT (JSON) at
# once, so a run cut off still reports what it measured.
#
# Before, on a machine with network, from the repository root:
#   echo /.whl/ >> .git/info/exclude && ../shared/tools/gpu-wheelhouse.sh .whl
#   mkdir -p .gpu-data && cp ../shared/data/wikiser-small/dev.txt .gpu-data/
# (both folders are git-ignored and travel with the project; 64 MiB in all). Then on the
# GPU machine: scripts/gpu_check.sh   (RESULT defaults to $OUT/gpu_check.json)
#
# Settings (environment): GPU_ID (0; -1 runs on the CPU, without mixed precision, whose
# gradient scaler needs CUDA), DATA (.gpu-data/dev.txt, else assets/sample.bio),
# ENCODER_SIZE (base; tiny for tests), STEPS (60), N_PASSES ("1 2"), BATCH_SIZES ("32 128 512"),
# INFER_WORDS (100000), SKIP_INSTALL (set: use what is installed), PYTHON (python3).
# The encoder has random weights: its speed is a real bert-base's, its accuracy is nil.
set -uo pipefail
gpu=${GPU_ID:-0}
py=${PYTHON:-python3}
data=${DATA:-}
[ -n "$data" ] || { [ -f .gpu-data/dev.txt ] && data=.gpu-data/dev.txt || data=assets/sample.bio; }
out_dir=${OUT:-.bench}
mkdir -p "$out_dir"
result=${RESULT:-$out_dir/gpu_check.json}
work=$(mktemp -d)
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
rm -f "$result"
bench() { $py scripts/gpu_bench.py "$@"; }
note() { $py - "$result" "$1" "$2" <<'PY'
import json, os, sys
path, key, value = sys.argv[1:]
data = json.load(open(path)) if os.path.exists(path) else {}
data[key] = value
open(path + ".tmp", "w").write(json.dumps(data, indent=2) + "\n")
os.replace(path + ".tmp", path)
PY
}
stage() { echo "== $1 ($(date +%T))" >&2; }

stage install
if [ -z "${SKIP_INSTALL:-}" ] && [ -d .whl ]; then
  if $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$PWD/.gpu-site" .whl/*.whl; then
    export PYTHONPATH="$PWD/.gpu-site${PYTHONPATH:+:$PYTHONPATH}"
    note install "wheels from .whl"
  else
    note install "FAILED: pip install from .whl"; exit 1
  fi
else
  note install "skipped: using the installed packages"
fi
versions=$($py -c 'import spacy, thinc, torch, transformers, spacy_ntk_ner as n
print(f"spacy {spacy.__version__}, thinc {thinc.__version__}, torch {torch.__version__}, transformers {transformers.__version__}, spacy-ntk-ner {n.__version__}")') \
  || { note install "FAILED: the packages do not import"; exit 1; }
note versions "$versions"
if [ "$gpu" -ge 0 ]; then
  device=$($py -c 'import cupy, torch; print(torch.cuda.get_device_name(), "cupy", cupy.__version__)') \
    || { note device "FAILED: no GPU through cupy and torch"; exit 1; }
else
  device=cpu
fi
note device "$device"

stage smoke
if [ "$gpu" -ge 0 ]; then
  if smoke=$($py -m pytest -m gpu tests -q -p no:cacheprovider 2>&1); then :; fi
  note smoke "$(echo "$smoke" | tail -1)"
else
  note smoke "skipped: GPU_ID=-1"
fi

stage encoder
size=${ENCODER_SIZE:-base}
$py scripts/make_encoder.py "$work/encoder" --size "$size" --text "$data" >/dev/null \
  || { note encoder "FAILED"; exit 1; }
note encoder "random BERT, $size shape"
$py -m spacy_ntk_ner convert "$data" "$work/corpus" --split train=0.9,dev=0.1 --seed 0 --quiet \
  || { note data "FAILED: convert $data"; exit 1; }
note data "$data"

for n in ${N_PASSES:-1 2}; do
  stage "train n_passes=$n"
  save=()
  [ -d "$work/model" ] || save=(--save "$work/model")
  bench train "$result" "$work/corpus" "$work/encoder" --n-passes "$n" --steps "${STEPS:-60}" \
    --gpu-id "$gpu" "${save[@]}" || note "train_n$n" "FAILED"
  if [ -d "$work/model" ] && ! $py -c "import json,sys; sys.exit('infer_words_per_s' not in json.load(open('$result')))"; then
    stage inference
    # shellcheck disable=SC2086
    bench infer "$result" "$work/corpus" "$work/model" --gpu-id "$gpu" \
      --batch-sizes ${BATCH_SIZES:-32 128 512} --max-words "${INFER_WORDS:-100000}" \
      || note infer_words_per_s "FAILED"
  fi
done

stage table
bench table "$result"
rm -rf "$work"
