"""mirstream's pluggable analyzers: one small class per algorithm; ``model_registry.yaml`` says how to serve it."""
