"""What the gateway counts and how it is shown: stats, Prometheus metrics, cost, usage, logs, traces."""
