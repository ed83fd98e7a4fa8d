"""Operating the server: ``launcher`` (start/stop Ray and the app), ``weights`` (download and verify model
files), ``k8s_render`` (KubeRay manifests from the registry) and ``batch`` (offline catalogue runs on Ray Data)."""
