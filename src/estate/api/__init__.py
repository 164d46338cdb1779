"""The HTTP entry point: FastAPI over the application layer (REST under `/api/v1`, SSE, health, metrics)."""

from estate.api.app import create_api

__all__ = ["create_api"]
