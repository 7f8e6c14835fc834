"""activations (being written)."""
