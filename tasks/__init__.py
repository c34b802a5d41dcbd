"""Task plugins, one module per task family; registered in pyproject.toml under `harness.tasks`."""
