"""mirstream: a music-audio analysis server (ingress → decode once → model graph → Server-Sent Events).

Folders, in the order a request meets them:
- ``contract/``  the wire format (events, schemas) shared with the client; no server dependency
- ``ingress/``   the HTTP surface and the request path: request → audio_source → decode → model_graph → stream
- ``registry/``  model_registry.yaml: entries, the model graph, deployment descriptions, availability
- ``runners/``   where models run: Ray Serve deployments or in-process pools, behind one interface
- ``ops/``       launcher, weights download, KubeRay render, offline batch runs
- ``observability/`` logs and metrics; ``cli/`` the ``mirstream`` command; ``client/`` the Python client
Nothing is imported here, so ``serve_app.client`` works with the base install (no Ray, no model runtimes).
"""
