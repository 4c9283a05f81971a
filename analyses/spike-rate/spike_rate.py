"""spike-rate: the firing rate of each unit of a session; units at or above min_rate_hz pass.

Reads $CAAS_INPUT (spike trains: {"session", "units": [{"unit_id", "spike_times_s"}]}) and
$CAAS_CONFIG (the parameters, validated by caas against parameters.schema.json, defaults applied);
writes rates.csv and summary.json into $CAAS_OUTPUT_DIR. Standard library only.
Exit 1 when the input is unusable, 2 when not run by the caas agent.
"""

import csv
import json
import os
import sys


def required(name):
    value = os.environ.get(name)
    if not value:
        print(f"spike-rate: {name} is not set: spike-rate must be run by the caas agent", file=sys.stderr)
        sys.exit(2)
    return value


def main():
    config = json.load(open(required("CAAS_CONFIG")))
    input_file = required("CAAS_INPUT")
    output_dir = required("CAAS_OUTPUT_DIR")
    try:
        units = json.load(open(input_file))["units"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        print(f"spike-rate: {input_file} is not a spike-train file: {error!r}", file=sys.stderr)
        sys.exit(1)

    last_spike = max((u["spike_times_s"][-1] for u in units if u["spike_times_s"]), default=0.0)
    duration = config["duration_s"] or last_spike
    rates = [(u["unit_id"], len(u["spike_times_s"]) / duration if duration > 0 else 0.0) for u in units]
    passing = [(unit, rate) for unit, rate in rates if rate >= config["min_rate_hz"]]

    with open(os.path.join(output_dir, "rates.csv"), "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["unit_id", "rate_hz", "passes"])
        for unit, rate in rates:
            writer.writerow([unit, f"{rate:.6g}", rate >= config["min_rate_hz"]])
    summary = {
        "n_units": len(rates),
        "n_passing": len(passing),
        "mean_rate_hz": sum(rate for _, rate in rates) / len(rates) if rates else 0.0,
        "analysis_tag": config["analysis_tag"],
    }
    with open(os.path.join(output_dir, "summary.json"), "w") as out:
        json.dump(summary, out, indent=2)
    print(f"spike-rate: {len(passing)} of {len(rates)} units fire at least {config['min_rate_hz']} Hz")


if __name__ == "__main__":
    main()
