"""Physically based painting simulator: placeholder until implemented."""
