"""The wire contract (docs: analysis-stream.md): event payloads, their JSON Schemas and the catalogue's shape.

Pure Python with no server dependency: the server builds events with it, the OpenAPI document embeds its
schemas, the Python client parses with it, and the web page's parser is tested against the same schemas.
"""
