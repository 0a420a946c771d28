"""Course tooling: notebook execution and the notebook/library mirror check."""
