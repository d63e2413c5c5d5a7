"""What a model is: formula, families, priors, design, model spec, TOML specs (no PyMC)."""
