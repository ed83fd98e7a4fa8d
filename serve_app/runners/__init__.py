"""Where models run: ``base`` (the one interface the stream uses), ``host`` (an analyzer inside a worker),
``ray_serve`` (one Serve deployment per entry) and ``in_process`` (process pools, no Ray)."""
