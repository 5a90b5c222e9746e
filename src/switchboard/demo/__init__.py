"""``switchboard demo``: scheduler, stand-in nodes and client sessions on one machine, live.

- ``app``       orchestration: start, drive, stop, summary (:func:`run_demo`)
- ``processes`` child processes in their own process groups, logs, teardown
- ``load``      the client sessions (SDK) and what they saw (:class:`Tally`)
- ``monitor``   polling the scheduler's operator API and metrics
- ``stats``     percentiles of samples and of Prometheus histograms (pure)
- ``view``      the live ``rich`` view, plain lines for CI, the summary
"""

from switchboard.demo.app import DemoError, DemoOptions, run_demo

__all__ = ["DemoError", "DemoOptions", "run_demo"]
