"""The readiness floor: per-host telemetry coverage, the end-to-end canary, and the HTML report."""
