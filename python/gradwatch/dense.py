"""dense (being written)."""
