"""The embedding engine: encoder, micro-batcher and registry; free of Django except at its edges."""
