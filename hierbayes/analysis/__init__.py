"""What the draws say: pooling report, empirical Bayes, predictions, LOO, plots."""
