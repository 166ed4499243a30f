"""The domain pipelines, one folder each, all the same shape (README.md); found by entry point."""
