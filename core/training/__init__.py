"""Training: runs (a run is a directory), jobs (processes and locks), the training loop, callbacks, distribution."""
