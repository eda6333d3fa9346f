"""Linear solvers: dense and sparse direct, Krylov, AMG, singularity diagnosis."""
