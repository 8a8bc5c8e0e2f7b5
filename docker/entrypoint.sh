#!/usr/bin/env bash
# The image's entry point: find or build the corpus, then start the configured run.
#
#   GOCRAM_MODE    train (default) | lab | shell (anything else: exec the arguments)
#   GOCRAM_CONFIG  config name or YAML path (default small)
#   GOCRAM_BUDGET  training budget in seconds (default: the config's)
#   GOCRAM_ENGINE  single (default) | ddp | fsdp | zero1 | zero2 | zero3
#   GOCRAM_NPROC   processes for a multi-process engine (default: every visible GPU)
#   GOCRAM_RUN     run name under /results (default: CONFIG-ENGINE); a rerun resumes it
#   GOCRAM_MATRIX  the matrix for GOCRAM_MODE=lab (default smoke)
#   GOCRAM_CORPUS  corpus directory (default /data/corpus if it exists, else the embedded sample)
#   GOCRAM_BUILD_CORPUS=debian  build /data/corpus from Debian's Go packages first
# Arguments are extra section.key=value overrides for `gocram train`.
set -euo pipefail

mode="${GOCRAM_MODE:-train}"
config="${GOCRAM_CONFIG:-small}"
engine="${GOCRAM_ENGINE:-single}"
mkdir -p /data/cache /results

if [[ "${GOCRAM_BUILD_CORPUS:-}" == "debian" && ! -d /data/corpus ]]; then
    apt-get update
    # shellcheck disable=SC2046  # one package name per word
    apt-get install -y --no-install-recommends $(cat corpus/debian-go-packages.txt)
    gocram data build --source debian:corpus/debian-go-packages.txt --out /data/corpus \
        --per-package-bytes 100000
fi
corpus="${GOCRAM_CORPUS:-}"
if [[ -z "$corpus" ]]; then
    if [[ -d /data/corpus ]]; then corpus=/data/corpus; else corpus=corpus/sample; fi
fi
echo "[entrypoint] corpus: $corpus" >&2

case "$mode" in
train)
    run="/results/${GOCRAM_RUN:-${config##*/}-${engine}}"
    run="${run%.yaml}"
    args=(train --config "$config" --engine "$engine" --out "$run" "data.corpus=$corpus")
    [[ -n "${GOCRAM_BUDGET:-}" ]] && args+=(--budget "$GOCRAM_BUDGET")
    # A restarted container (preemption, a crash) continues inside the same budget.
    compgen -G "$run/checkpoint/ckpt-*.pt" >/dev/null && args+=(--resume)
    if [[ "$engine" == "single" ]]; then
        exec gocram "${args[@]}" "$@"
    fi
    nproc="${GOCRAM_NPROC:-$(nvidia-smi --list-gpus | wc -l)}"
    exec torchrun --standalone --nproc_per_node "$nproc" -m gocram "${args[@]}" "$@"
    ;;
lab)
    exec gocram lab --matrix "${GOCRAM_MATRIX:-smoke}" --results /results/lab \
        --runs /results/lab/runs "$@"
    ;;
*)
    exec "$@"
    ;;
esac
