"""Local testbed: a social network of real processes, a resource exporter, Prometheus, Alertmanager."""
