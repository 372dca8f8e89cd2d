"""The pieces of the synthetic SMPL-X-format model; fitting.synthetic_model assembles and writes it."""
