#!/usr/bin/env bash
# The main job on the embedded defaults (folder buckets, SQLite, child processes):
# sample data -> dispatch -> dry-run plan -> execute -> rerun (all skipped) -> records, as the README's
# "What the demo shows" tells it.
# Everything lands in the workspace (CAAS_HOME, default ./.caas); run it again to see the gate skip.
set -euo pipefail
cd "$(dirname "$0")/.."
caas() { node bin/caas.js "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
work="${CAAS_HOME:-.caas}"
mkdir -p "$work"
jobs="$work/demo-jobs.jsonl"

step "1. Sample data: spike trains of two subjects in bucket sample-data, and their catalog entries"
caas catalog generate-sample

step "2. Dispatch: every processed session of subject 774659, one job per spike-train file, x 2 cutoffs"
caas dispatch --query '{"subject.subject_id": "774659", "data_description.data_level": "derived"}' \
  --analysis unit-filter --file-ext .spikes.json --params examples/analysis_parameters.json --group demo -o "$jobs"
echo "wrote $(wc -l < "$jobs") job inputs to $jobs"

step "3. Dry run (the default): the plan, nothing written"
caas run "$jobs"

step "4. Execute: each job in a fresh child process under the NeuroCAAS bucket contract"
caas run "$jobs" --execute

step "5. Same jobs again: every identity already succeeded, so nothing runs"
caas run "$jobs" --execute

step "6. The records (provenance): caas query"
caas query '{"analysis.name": "unit-filter"}'

first_results=$(find "$work/buckets/unit-filter/demo/results" -name summary.json | sort | head -1)
step "7. One job folder, as any NeuroCAAS client sees it"
find "$(dirname "$(dirname "$first_results")")" -type f | sort | sed "s#^$work/buckets/##"
echo
echo "summary.json: $(cat "$first_results")"
