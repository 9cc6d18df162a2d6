"""Helpers shared by entry points, methods and data: errors, config, checkpoints, run files."""
