"""Quality guard: every backend/precision compared with the torch fp32 reference on a fixed corpus."""
