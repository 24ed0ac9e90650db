"""What a figure function returns (``Drawn``) or raises (``Skipped``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


class Skipped(Exception):
    """The figure's runs do not exist in the selection; the message says what is missing."""


@dataclass
class Drawn:
    """A drawn figure: its files (PNG, PDF) and the tables behind it (name -> DataFrame)."""

    name: str
    files: list[Path]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    note: str = ""
