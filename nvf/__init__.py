"""A thin Neural Voting Field trainer and evaluator over h36m-nvf shards."""
