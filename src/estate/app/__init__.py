"""The application layer: the use cases every entry point (CLI, API, console, webhooks) calls, with typed
views as results; `bootstrap` wires them once."""

from estate.app.bootstrap import App, Wiring, bootstrap
from estate.app.caller import Caller

__all__ = ["App", "Caller", "Wiring", "bootstrap"]
