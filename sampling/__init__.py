"""Query points, exact signed distances, NVF vote targets and HDF5 shards."""
