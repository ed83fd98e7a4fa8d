"""The request path, in order: ``request`` (validate) → ``audio_source`` (body or URL) → ``decode`` (once) →
``model_graph`` (every model the request needs, each once, in parallel) → ``stream`` (Server-Sent Events).
``app`` wires them to HTTP routes; ``admission`` guards the door; ``openapi`` documents it all."""
