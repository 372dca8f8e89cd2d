"""`make bench`: every benchmark measured as a ratio against a named peer in the same run."""
