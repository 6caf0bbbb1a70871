"""vz layer."""
