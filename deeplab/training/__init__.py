"""Training: strategy, loss, schedule, the custom loop with checkpoints."""
