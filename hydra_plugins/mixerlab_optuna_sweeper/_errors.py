"""The sweeper's own errors; Hydra prints these as one clear message, without a traceback."""

from hydra.errors import CompactHydraException


class SearchSpaceError(CompactHydraException, ValueError):
    """An invalid search space or sweeper setting, found before anything is launched."""


class TooManyFailedTrials(CompactHydraException, RuntimeError):
    """The study's fraction of failed trials exceeds ``max_failure_rate``."""
