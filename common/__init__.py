"""Small helpers every package may use (it imports nothing of the project)."""
