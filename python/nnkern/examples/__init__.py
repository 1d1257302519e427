"""Example models trained end to end on bundled real data (used by ``nnkern demo`` and the scripts in
the repository's examples/ folder)."""
