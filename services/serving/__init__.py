"""objvid.serving: the server framework shared by the depth and cache services (and, for flags, metrics and
signals, the PyTriton diffusion server). Server-only: the client never imports it.

- ``config``: ``ServingConfig`` (host, ports, TLS/mTLS paths, token, grace, ready file) and its flags;
- ``server``: ``GrpcServer`` (bind / report / serving / drain) and ``run`` (the CLI lifecycle);
- ``status``: typed exceptions -> gRPC status, ``guard_unary`` / ``guard_stream`` for handlers;
- ``auth``: the bearer-token interceptor (health and reflection stay open);
- ``metrics``: ``MetricsEndpoint`` (private Prometheus registry + /metrics), ``GcPauses``;
- ``cli``: logging setup and the ``serve`` command helpers every service CLI uses.
"""
