"""Test helpers shared by the tiers (event files, receivers)."""
