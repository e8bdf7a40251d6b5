"""Template tags of the vectors admin."""
