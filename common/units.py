"""Units: metres and radians inside; millimetres only at the borders, through this constant."""

MM_PER_M = 1000.0
"""Millimetres per metre (Human3.6M CDFs, H3WB JSON and reported errors are in mm)."""
