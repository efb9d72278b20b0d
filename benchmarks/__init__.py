"""Timing of jaxae's train and eval steps against a PyTorch reference: `python -m benchmarks.run`."""
