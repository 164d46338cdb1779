"""Fakes of Estate's ports for unit tests: small, in memory, honest about what they skip."""
