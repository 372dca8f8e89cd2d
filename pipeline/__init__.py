"""Staged dask jobs over a Human3.6M release (real or synthetic) and the dataset I/O."""
