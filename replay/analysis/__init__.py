"""Questions over results: the kernel's fragmentation metrics (and their SQL macros),
named queries, and validation experiments."""
