"""Spawning and supervising zsyft worker processes, and the `zsyft` command line."""
