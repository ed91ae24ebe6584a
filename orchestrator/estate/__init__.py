"""The estate: the declarative model of sites, repository hosts and systems (inventory/)."""

from orchestrator.estate.loader import load_estate
from orchestrator.estate.model import Estate

__all__ = ["Estate", "load_estate"]
