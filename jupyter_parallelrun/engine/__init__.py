"""The engine: the runner process, its scheduler, mini-batch partitioning, the workers, output
and the backends."""
