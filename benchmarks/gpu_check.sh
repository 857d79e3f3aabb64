#!/usr/bin/env bash
# The prepared GPU measurement (issue: GPU-ready augmentation). One script,
# under 8 minutes on a machine with one GPU:
#   1. prints the GPU and the software it finds;
#   2. installs augpipe into the Python that has TensorFlow (no network needed
#      when TensorFlow, Keras and the other dependencies are already there, or
#      when AUGPIPE_WHEELHOUSE names a folder of wheels to install from);
#   3. runs profile-input --model cnn at batch 256 and 1024 with device
#      placement, XLA off and on, with augpipe against Keras' layer chain
#      inside the training step on the GPU, and the step without
#      augmentation (the augmentation's share of the step);
#   4. writes JSON results and a log to $OUT (or benchmarks/results/gpu/).
# It never estimates: a step that cannot run is recorded as not measured,
# with the reason, in $OUT/gpu_check.json, and the script exits 3.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results/gpu}"
mkdir -p "$OUT"
PYTHON="${PYTHON:-python3}"
LOG="$OUT/gpu_check.log"
: >"$LOG"
say() { echo "$*" | tee -a "$LOG"; }

record_blocked() {
    say "NOT MEASURED: $1"
    "$PYTHON" - "$OUT/gpu_check.json" "$1" <<'PY'
import json, subprocess, sys
try:
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=30).stdout.strip()
except (OSError, subprocess.SubprocessError):
    gpu = None
json.dump({"status": "not measured", "reason": sys.argv[2], "gpu": gpu, "python": sys.version.split()[0]},
          open(sys.argv[1], "w"), indent=2)
PY
    exit 3
}

say "== GPU"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$LOG" \
    || record_blocked "nvidia-smi failed: no GPU visible"
say "== Python: $("$PYTHON" --version 2>&1)"

if ! "$PYTHON" -c "import tensorflow" >/dev/null 2>&1; then
    if [ -n "${AUGPIPE_WHEELHOUSE:-}" ]; then
        say "== installing TensorFlow and the dependencies from $AUGPIPE_WHEELHOUSE"
        "$PYTHON" -m pip install -q --no-index --find-links "$AUGPIPE_WHEELHOUSE" "tensorflow[and-cuda]>=2.21,<2.22" \
            >>"$LOG" 2>&1 || record_blocked "installing TensorFlow from the wheelhouse failed (see gpu_check.log)"
    else
        record_blocked "TensorFlow is not installed for $("$PYTHON" --version 2>&1) on this machine, and it cannot reach a package index; pass AUGPIPE_WHEELHOUSE=<folder of wheels> (tensorflow[and-cuda] 2.21 and its CUDA 12 libraries)"
    fi
fi
say "== TensorFlow $("$PYTHON" -c 'import tensorflow as tf; print(tf.__version__, tf.config.list_physical_devices("GPU"))' 2>/dev/null)"
"$PYTHON" -c "import tensorflow as tf, sys; sys.exit(0 if tf.config.list_physical_devices('GPU') else 1)" \
    || record_blocked "TensorFlow is installed but sees no GPU (CUDA libraries missing or mismatched)"

say "== installing augpipe"
"$PYTHON" -m pip install -q --no-deps --no-build-isolation . >>"$LOG" 2>&1 \
    || "$PYTHON" -m pip install -q . >>"$LOG" 2>&1 \
    || record_blocked "installing augpipe failed (see gpu_check.log)"

run() {  # name, then profile-input arguments
    local name="$1"; shift
    say "== profile-input $*"
    "$PYTHON" -m augpipe.scripts.profile_input "$@" --json "$OUT/$name.json" 2>>"$LOG" | tee -a "$LOG"
}
# XLA off explicitly: Keras' default ("auto") turns it on for a GPU.
run xla_off --model cnn --batch-sizes 256,1024 --compare keras --repeats 3 --no-jit-compile
run xla_on --model cnn --batch-sizes 256,1024 --compare keras --repeats 3 --jit-compile
"$PYTHON" - "$OUT" <<'PY'
import json, pathlib, subprocess, sys
out = pathlib.Path(sys.argv[1])
gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
results = {p.stem: json.loads(p.read_text()) for p in out.glob("xla_*.json")}
# The issue's two GPU targets, read off the device-placement rows.
summary = {}
for run, report in results.items():
    for row in report.get("model") or []:
        if row["placement"] == "device":
            summary[f"{run}_batch{row['batch_size']}"] = {
                "augmentation_share_of_step": row.get("augmentation_share_of_step"),
                "keras_chain_cost_vs_ours_geometric": row.get("keras_chain_cost_vs_ours_geometric"),
                "step_time_synthetic_ms": row["step_time_synthetic_ms"],
            }
json.dump({"status": "measured", "gpu": gpu, "runs": sorted(results), "targets": summary},
          open(out / "gpu_check.json", "w"), indent=2)
print(json.dumps(summary, indent=2))
PY
say "== done: results in $OUT"
