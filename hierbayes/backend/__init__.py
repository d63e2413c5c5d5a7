"""From a spec to draws: the PyMC graph, the marginal likelihood, the plan, samplers."""
