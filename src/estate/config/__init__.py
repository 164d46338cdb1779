"""Estate-as-code: YAML files -> validated domain objects, with file:line:column errors."""

from estate.config.loader import LoadedEstate, load_estate
from estate.config.schema import json_schema

__all__ = ["LoadedEstate", "json_schema", "load_estate"]
