"""Training-only code: gold tags, losses, the training log (nothing here runs at inference)."""
