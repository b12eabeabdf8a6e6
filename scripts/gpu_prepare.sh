#!/usr/bin/env bash
# Lay beside the project what scripts/gpu_check.sh needs on a GPU machine without network,
# and say how to run it there. On a machine with network, from the repository root:
#   scripts/gpu_prepare.sh [SHARED]
# SHARED is the folder that holds tools/gpu-wheelhouse.sh and data/wikiser-small/dev.txt:
# the argument, else $SHARED, else ../shared. WHEELHOUSE and WIKISER_DEV name those two
# files directly. It lays:
#   .whl/       the Python 3.12 wheels the GPU image lacks (spaCy and its family,
#               spacy-transformers, transformers 4.53.2, ...) and the project's own wheel
#   .gpu-data/  dev.txt: WikiSER-small's dev file (checked against its md5)
# then checks that both are git-ignored and together under 60 MiB, and prints the device
# command and the paths to carry (.whl and .gpu-data; never .gpu-site, which the check
# makes there from .whl).
set -euo pipefail
shared=${1:-${SHARED:-../shared}}
wheelhouse=${WHEELHOUSE:-$shared/tools/gpu-wheelhouse.sh}
dev=${WIKISER_DEV:-$shared/data/wikiser-small/dev.txt}
dev_md5=fd756683b6a03f7e883e237a250ba857 # ../shared/data/README.md
limit_mib=60

die() {
  echo "gpu_prepare: $*" >&2
  exit 1
}
[ -f pyproject.toml ] && [ -f scripts/gpu_check.sh ] || die "run me from the repository root"
[ -f "$wheelhouse" ] || die "no wheelhouse script at $wheelhouse (give SHARED or WHEELHOUSE)"
[ -f "$dev" ] || die "no WikiSER dev file at $dev (give SHARED or WIKISER_DEV)"
[ "$(md5sum "$dev" | cut -d' ' -f1)" = "$dev_md5" ] || die "$dev: md5 is not $dev_md5"

rm -rf .whl .gpu-data
echo "== .whl (pip download, a few minutes)"
bash "$wheelhouse" .whl >/dev/null
echo "== .gpu-data"
mkdir .gpu-data
cp "$dev" .gpu-data/dev.txt
chmod u+w .gpu-data/dev.txt

# (a path inside each: a pattern for a folder does not match a name that does not exist)
for path in .whl .gpu-data .gpu-site; do
  git check-ignore -q "$path/x" || die "$path is not git-ignored: add /$path/ to .gitignore"
done
bytes=$(du -sb .whl .gpu-data | awk '{s += $1} END {print s}')
mib=$((bytes / 1048576))
[ "$bytes" -lt $((limit_mib * 1048576)) ] || die ".whl and .gpu-data: ${mib} MiB, over ${limit_mib} MiB"
# Besides what is carried, the tracked files and the untracked ones git does not ignore
# travel too (64 MiB in all).
tracked=$(git ls-files -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
untracked=$(git ls-files --others --exclude-standard)
[ -z "$untracked" ] || echo "note: these untracked files travel too:" $untracked
echo "ready: .whl $(du -sh .whl | cut -f1), .gpu-data $(du -sh .gpu-data | cut -f1):" \
  "${mib} MiB (limit ${limit_mib}); tracked files $((tracked / 1024)) KiB"
ls .whl | grep -i '^spacy_ntk_ner-' || die "the project's own wheel is missing from .whl"
cat <<EOF

Run this in the checkout the device call sends (with the wheel built from it), then
on the GPU machine (one call, at most 8 minutes; give it timeout_s 600):
  command: set -o pipefail; PYTHONUNBUFFERED=1 scripts/gpu_check.sh 2>&1 | tee \$OUT/gpu_check.log
  carry:   [".whl", ".gpu-data"]   (never .gpu-site)
What comes back in \$OUT: gpu_check.log, gpu_check.json, setup.log, gpu_tests.log,
train_n1.log, train_n2.log, infer.log.
EOF
