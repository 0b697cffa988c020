"""DeepRest exporter: every edge with I/O (OTLP, Prometheus, files, Flask) and the CLI."""
