"""System metrics of one job's run, sampled by MLflow's own monitor.

MLflow's ``SystemMetricsMonitor`` (what ``mlflow.start_run(log_system_metrics=True)`` starts)
samples, every ``interval_s`` seconds in a daemon thread, CPU utilisation, system memory,
disk and network, and for NVIDIA GPUs (with ``nvidia-ml-py`` installed) each GPU's
utilisation, memory and power, and logs them as ``system/*`` metrics of the run (step 0, 1,
...; a resumed run continues the steps). MLflow's environment variables
``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` / ``..._SAMPLES_BEFORE_LOGGING`` /
``..._NODE_ID`` override the interval given here, as MLflow documents.

What this wrapper adds to the fluent API's use of the monitor:

* it runs against an explicit run id and tracking URI (the project keeps no global active
  run, tracking/mlflow_tracker.py);
* ``stop()`` ends the thread and writes its last samples *before* the caller closes the run:
  nothing is logged after the run's final status, and a job shorter than one interval still
  gets one sample (MLflow's own ``finish`` drops the samples of the unfinished interval);
* ``stop()`` never hangs a job: it waits at most ``STOP_TIMEOUT_S`` for the thread (which
  may be inside one request to a server that stopped answering) and then drops the samples
  it holds; the thread is a daemon and, once that request returns, exits without logging
  (its stop event is set). Idempotent.

Failures here (psutil missing, a store error in the thread) are warnings, never the job's.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from typing import Any

STOP_TIMEOUT_S = 10.0
log = logging.getLogger(__name__)


class SystemMetrics:
    """MLflow's system-metrics monitor for run ``run_id`` of the store at ``uri`` (the URI
    handed to MLflow, credentials included: never logged). ``resume``: continue the steps of
    a reopened run."""

    def __init__(self, uri: str, run_id: str, interval_s: float, resume: bool = False) -> None:
        self._monitor: Any = None
        if importlib.util.find_spec("psutil") is None:
            log.warning("tracking.system_metrics=true needs psutil (pip install psutil): no "
                        "system metrics for this run")
            return
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        try:
            monitor = SystemMetricsMonitor(run_id, sampling_interval=interval_s,
                                           samples_before_logging=1, resume_logging=resume,
                                           tracking_uri=uri)
            monitor.start()
        except Exception as err:  # noqa: BLE001 - system metrics never fail a job
            log.warning("could not start MLflow's system metrics monitor: %s", err)
            return
        self._monitor = monitor

    @property
    def running(self) -> bool:
        return self._monitor is not None

    def stop(self) -> None:
        """End the sampling thread, log the samples of the unfinished interval and flush, within
        ``STOP_TIMEOUT_S``; a no-op once stopped."""
        monitor, self._monitor = self._monitor, None
        if monitor is None:
            return
        # MLflow's finish() sets the stop event, joins the thread (no timeout) and flushes
        done, abandoned = threading.Event(), threading.Event()

        def finish() -> None:
            try:
                monitor.finish()
                last = monitor.aggregate_metrics()  # the samples since the last logged step
                if last and not abandoned.is_set():
                    monitor.publish_metrics(last)
                    monitor.mlflow_logger.flush()
            except Exception as err:  # noqa: BLE001 - system metrics never fail a job
                log.warning("could not log the last system metrics: %s", err)
            finally:
                done.set()

        threading.Thread(target=finish, name="SystemMetricsStop", daemon=True).start()
        if not done.wait(STOP_TIMEOUT_S):
            abandoned.set()
            monitor.mlflow_logger.data = []  # nothing left for a late flush to write
            log.warning("the system-metrics thread did not stop within %.0f s (the tracking "
                        "store is not answering); its last samples are dropped", STOP_TIMEOUT_S)
