"""integration layer."""
