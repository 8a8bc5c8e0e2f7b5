"""Toggle registry, ablation matrices, the cell runner, result rows, tables and plots."""
