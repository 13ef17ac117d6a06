"""objvid.serving: the server framework shared by the depth and cache services (and, for flags, metrics and
signals, the PyTriton diffusion server). Server-only: the client never imports it.

- ``config``: ``ServingConfig`` (host, ports, TLS/mTLS paths, token, grace, ready file) and its flags;
- ``server``: ``GrpcServer`` (bind / report / serving / drain), ``run`` (the CLI lifecycle) and
  ``HostedService`` (port / address / wait of a service's server object);
- ``status``: typed exceptions -> gRPC status, ``guard_unary`` / ``guard_stream`` for handlers;
- ``auth``: the bearer-token interceptor (health and reflection stay open);
- ``metrics``: ``MetricsEndpoint`` (private Prometheus registry + /metrics), ``GcPauses``;
- ``cli``: logging setup and ``serve``, the body of every service's ``serve`` command.
"""
