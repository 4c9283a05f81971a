#!/usr/bin/env bash
# mock-wait: NeuroCAAS's mock analysis. Waits, optionally fails, optionally leaves a marker line so
# tests can count how many times it really ran. Config values are read by node and come back to
# bash only as numbers and 0/1 flags, so nothing a user wrote is ever parsed as shell.
set -euo pipefail

if [[ -z "${CAAS_CONFIG:-}" || -z "${CAAS_OUTPUT_DIR:-}" ]]; then
  echo "mock-wait: CAAS_CONFIG and CAAS_OUTPUT_DIR must be set: mock-wait must be run by the caas agent" >&2
  exit 2
fi

read -r waited_s whole_s rest_s fail marker < <(node -e '
  const fs = require("node:fs");
  const file = process.argv[1];
  let config;
  try {
    config = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (error) {
    console.error(`mock-wait: config ${file}: ${error.message}`);
    process.exit(1);
  }
  const wait = config.wait ?? 1;
  if (typeof wait !== "number" || !Number.isFinite(wait) || wait < 0) {
    console.error(`mock-wait: config ${file}: "wait" must be a number of seconds >= 0`);
    process.exit(1);
  }
  const whole = Math.floor(wait);
  console.log(String(wait), whole, (wait - whole).toFixed(3), config.fail === true ? 1 : 0, typeof config.marker === "string" ? 1 : 0);
' "$CAAS_CONFIG") || { echo "mock-wait: could not read the config" >&2; exit 1; }

# Started (not only finished) runs, so tests can tell a job started twice from one that finished twice.
if [[ "$marker" == 1 && -n "${CAAS_MOCK_START_FILE:-}" ]]; then
  printf '%s %s\n' "${dataname:-}" "${configname:-}" >>"$CAAS_MOCK_START_FILE"
fi

# Tests hold a run here until they create this file, instead of guessing how long to wait.
while [[ -n "${CAAS_MOCK_GATE_FILE:-}" && ! -e "$CAAS_MOCK_GATE_FILE" ]]; do
  sleep 0.1
done

for ((i = 1; i <= whole_s; i++)); do
  sleep 1
  echo "mock-wait: waited ${i} s"
done
sleep "$rest_s"

if [[ "$marker" == 1 && -n "${CAAS_MOCK_MARKER_FILE:-}" ]]; then
  printf '%s %s\n' "${dataname:-}" "${configname:-}" >>"$CAAS_MOCK_MARKER_FILE"
fi

if [[ "$fail" == 1 ]]; then
  echo "mock failure requested" >&2
  exit 3
fi

node -e '
  const [file, waited, dataname, input] = process.argv.slice(1);
  const body = { waited_s: Number(waited), dataname, input: input === "" ? null : require("node:path").basename(input) };
  require("node:fs").writeFileSync(file, JSON.stringify(body, null, 2) + "\n");
' "$CAAS_OUTPUT_DIR/waited.json" "$waited_s" "${dataname:-}" "${CAAS_INPUT:-}"
echo "mock-wait: done"
