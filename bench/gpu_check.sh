#!/usr/bin/env bash
# The device check for issue 17: correctness on CUDA, throughput and MFU, MC-scoring speed, and a slice of the
# paper preset end to end; one JSON file of figures. Finishes within 8 minutes on one H100-class GPU with the
# embedded model (each step is bounded; see bench/gpu_check.py).
#
#   bench/gpu_check.sh [--cpu-smoke] [--json PATH]
#
# --cpu-smoke   the same steps on CPU with the tiny model and tiny sizes (< 1 minute): proves the script works.
# --json PATH   where the figures go (default: $OUT/gpu_check.json when $OUT is set, else ./gpu_check.json).
# Exit status: 0 all steps ok, 1 a step failed (the JSON says which), 2 bad usage or no GPU without --cpu-smoke.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
SMOKE=()
JSON="${OUT:+$OUT/gpu_check.json}"
JSON="${JSON:-gpu_check.json}"
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu-smoke) SMOKE=(--cpu-smoke); shift ;;
    --json) [ $# -ge 2 ] || { echo "error: --json needs a path" >&2; exit 2; }; JSON="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown option $1; use --cpu-smoke and/or --json PATH" >&2; exit 2 ;;
  esac
done
if [ ${#SMOKE[@]} -gt 0 ]; then
  export CUDA_VISIBLE_DEVICES=""  # the smoke run must not touch a GPU even where there is one
fi
# The whole check is bounded: 8 minutes on a GPU, 2 in smoke mode (it normally takes well under one).
LIMIT=$([ ${#SMOKE[@]} -gt 0 ] && echo 120 || echo 480)
exec timeout --signal=TERM --kill-after=15 "$LIMIT" "$PY" bench/gpu_check.py "${SMOKE[@]}" --json "$JSON"
