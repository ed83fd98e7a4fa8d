"""``python -m serve_app.cli``: the same as the ``mirstream`` command."""

from serve_app.cli import main

main()
