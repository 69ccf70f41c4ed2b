"""Training-only code: gold tags, losses, the schedule, the training log and its checks (nothing here runs at inference)."""
