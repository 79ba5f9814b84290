"""Sharing studies outside the care team: de-identification, links, patient access."""
