"""Data: the knowledge-conflict schema, built-in suites and loaders for published formats."""
