"""chainwatch: correlate macOS telemetry into MITRE ATT&CK analytic AN1316 chains.

The package is the Lambda layer and the development library at once. Its floors, each importing only from the
ones above it in this list:

- :mod:`chainwatch.events` -- the canonical, typed, immutable event model;
- :mod:`chainwatch.sources` -- one module per telemetry format, mapping records to canonical events;
- :mod:`chainwatch.engine` -- pure correlation (lineage, chain assembly, windows);
- :mod:`chainwatch.policy` -- the analytic's lists and allowlists, as data;
- :mod:`chainwatch.state` -- state stores behind one port;
- :mod:`chainwatch.findings` -- the finding model and its renderings;
- :mod:`chainwatch.sinks` -- delivery targets behind one contract;
- :mod:`chainwatch.readiness` -- can the fleet's telemetry complete the chain: coverage, the canary, the report;
- :mod:`chainwatch.pipeline` -- the steps that run the engine: ``correlate`` and ``dispatch`` (Lambda), ``detect``
  (files);
- :mod:`chainwatch.app` -- the ``chainwatch`` command, the embedded local run, the Lambda runtimes and settings.

(:mod:`chainwatch.errors` is the one error hierarchy, importable from every floor.)
"""

__version__ = "0.1.0"
