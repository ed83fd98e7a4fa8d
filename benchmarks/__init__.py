"""mirstream benchmarks: each script measures side by side in one run and writes its results file."""
