"""Identity adapters: API token strings and OIDC JWT verification (the decisions are in `estate.domain.access`)."""
