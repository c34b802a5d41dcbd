"""Builders for tests, the demo and the benchmarks: tiny models from configs and small data sets in the official
layouts. Tasks and backends never import this package."""
