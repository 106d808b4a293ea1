"""Reports over a run's ledger: metric-vs-step curves and a table of checkpoints."""
