"""vectors: turn short texts into embedding vectors, batched, over HTTP and WebSocket."""

__version__ = "1.0.0"
