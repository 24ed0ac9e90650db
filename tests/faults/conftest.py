"""Fault-injection tests (issue 8): the shared helpers of tests/ (jobs.py, services.py)."""

import sys
from pathlib import Path

TESTS = str(Path(__file__).resolve().parents[1])
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)
