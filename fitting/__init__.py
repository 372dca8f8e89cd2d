"""Pseudo-ground-truth SMPL-X fitting: body model loading, the synthetic model, SMPLify-X."""
