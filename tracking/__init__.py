"""Experiment tracking behind a small interface (tracking.tracker.Tracker)."""

from tracking.mlflow_tracker import MlflowTracker, default_tracking_uri, resolve_tracking_uri
from tracking.retry import TrackingError
from tracking.tracker import NullTracker, Tracker

__all__ = ["MlflowTracker", "NullTracker", "Tracker", "TrackingError", "default_tracking_uri",
           "resolve_tracking_uri"]
