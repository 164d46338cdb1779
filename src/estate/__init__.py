"""Estate: roll out infrastructure module updates across environments in controlled waves."""

__version__ = "0.1.0"
