"""networking layer."""
