"""Numeric core, NumPy and SciPy only: pooling maths, convergence statistics, SBC ranks."""
