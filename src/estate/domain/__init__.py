"""The pure core: models, rule resolution, selectors, rollout state machine. No I/O, no clock."""
