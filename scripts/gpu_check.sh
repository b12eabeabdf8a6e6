#!/usr/bin/env bash
# Train configs/trf.cfg for a few epochs on a GPU, evaluate, and print words per second
# for training and inference. Usage (from the repository root, package installed with
# the transformers extra and a cupy that matches the machine's CUDA):
#   scripts/gpu_check.sh [BIO_FILE] [EPOCHS] [ENCODER_DIR]
# Without ENCODER_DIR it builds a bert-base-shaped encoder with random weights (no model
# hub needed): its speed is that of the real model, its accuracy is nil.
# GPU_ID (default 0) picks the GPU; GPU_ID=-1 runs the same on the CPU.
set -euo pipefail
data=${1:-assets/sample.bio}
epochs=${2:-3}
encoder=${3:-}
gpu=${GPU_ID:-0}
py=${PYTHON:-python}
work=${WORK:-$(mktemp -d)}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [ -z "$encoder" ]; then
  encoder=$work/encoder
  $py scripts/make_encoder.py "$encoder" --size "${ENCODER_SIZE:-base}" --text "$data" >/dev/null
fi
$py -m spacy_ntk_ner convert "$data" "$work/corpus" --split train=0.9,dev=0.1 --quiet
extra=()
if [ "$gpu" -ge 0 ]; then
  $py -c 'import cupy; print("cupy", cupy.__version__, "GPUs:", cupy.cuda.runtime.getDeviceCount())'
else
  # Mixed precision and its gradient scaler need a GPU.
  extra=(--components.ntk_ner.model.tok2vec.mixed_precision false)
fi
start=$(date +%s.%N)
$py -m spacy train configs/trf.cfg --output "$work/training" --gpu-id "$gpu" \
  --paths.train "$work/corpus/train" --paths.dev "$work/corpus/dev" \
  --components.ntk_ner.model.tok2vec.name "$encoder" \
  --training.max_epochs "$epochs" --training.max_steps 0 --training.eval_frequency 100000 \
  --training.optimizer.learn_rate.total_steps 2000 "${extra[@]}"
end=$(date +%s.%N)
$py - "$work" "$start" "$end" "$epochs" <<'PY'
import json, sys
work, start, end, epochs = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
words = json.load(open(f"{work}/corpus/stats.json"))["splits"]["train"]["tokens"] * epochs
print(f"training: {words} words in {end - start:.1f} s = {words / (end - start):.0f} words/s"
      " (start-up and the final evaluation included)")
PY
$py -m spacy_ntk_ner evaluate "$work/training/model-last" "$work/corpus/dev" --gpu-id "$gpu"
$py -m spacy benchmark speed "$work/training/model-last" "$work/corpus/dev" --gpu-id "$gpu"
