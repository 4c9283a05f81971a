"""Writes the JSON Schemas caas validates spike-rate's parameters and outputs with (needs pydantic 2)."""

import json
import pathlib

from models import SpikeRateParameters, SpikeRateSummary

here = pathlib.Path(__file__).parent
for model, name in ((SpikeRateParameters, "parameters.schema.json"), (SpikeRateSummary, "outputs.schema.json")):
    (here / name).write_text(json.dumps(model.model_json_schema(), indent=2) + "\n")
