"""The .slim container: spec (SPEC.md), reader and writer. Pure Python, no torch."""
