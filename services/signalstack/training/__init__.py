"""Training: point-in-time labels (``labels``), training frames through the store and from the
simulator (``frames``), purged walk-forward splits (``splits``); see docs/MODELS.md."""
