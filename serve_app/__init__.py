"""mirstream's server: ingress → decode once → fan out to model deployments → Server-Sent Events.

Read the modules in request order: request.py, audio_source.py, decode.py, stream.py (+ events.py),
then the two ways of running models: ray_app.py (Ray Serve deployments) and local_app.py (process pool).
"""
