"""Where backup files are kept (a local directory today; object storage can follow)."""
