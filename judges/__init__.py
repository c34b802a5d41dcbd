"""LLM judges (client, prompts, grading), judgment formats and rating systems (Elo, Bradley–Terry)."""
