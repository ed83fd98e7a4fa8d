"""Accuracy harness: ground truth built from reachable packages, metrics via mir_eval, RESULTS.md."""
