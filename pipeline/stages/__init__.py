"""One module per stage: a unit function and a plan of units."""
