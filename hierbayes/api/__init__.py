"""The user's entry points: Model, Fit, load, sbc, the command line, data sets."""
