"""Estate-as-code: YAML files -> validated domain objects, with file:line:column errors."""

from estate.config.loader import LoadedEstate, SourceFile, load_estate, load_sources, read_sources
from estate.config.schema import json_schema

__all__ = ["LoadedEstate", "SourceFile", "json_schema", "load_estate", "load_sources", "read_sources"]
