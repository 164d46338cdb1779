"""The engine: drives the pure rollout state machine (persist, then act, then observe)."""
