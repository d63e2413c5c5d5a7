"""Draws after sampling: array helpers, completion, diagnostics, netCDF storage."""
