"""Model kinds: each answers the request kinds it can, in batches, and knows nothing of tasks."""
