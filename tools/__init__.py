"""Project maintenance tools (lock checks)."""
