"""spike-rate's parameter and output models, in pydantic.

caas reads the JSON Schemas exported from them (parameters.schema.json, outputs.schema.json), not
this file: run `python3 export_schemas.py` after changing a model, and commit the schemas with it.
The analysis itself (spike_rate.py) needs only the standard library.
"""

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field


class SpikeRateParameters(BaseModel):
    # Unknown keys are refused, so a misspelt parameter is an error instead of a silent default.
    model_config = ConfigDict(extra="forbid")

    min_rate_hz: float = Field(0.5, ge=0, description="a unit passes when it fires at least this often")
    duration_s: Optional[float] = Field(
        None, gt=0, description="length of the recording; default: the last spike of the session"
    )
    analysis_tag: str = Field("default", description="free label copied into summary.json")


class SpikeRateSummary(BaseModel):
    n_units: int = Field(ge=0)
    n_passing: int = Field(ge=0)
    mean_rate_hz: float = Field(ge=0)
    analysis_tag: str
