//! envoyproxy/ratelimit variables this service accepts without effect, and those it
//! refuses at start, each with the reason shown to the operator.

/// Variables accepted without effect, and why.
pub const IGNORED: &[(&str, &str)] = &[
    (
        "USE_STATSD",
        "no StatsD: the same statistics are Prometheus series on /metrics",
    ),
    (
        "STATSD_HOST",
        "no StatsD: the same statistics are Prometheus series on /metrics",
    ),
    (
        "STATSD_PORT",
        "no StatsD: the same statistics are Prometheus series on /metrics",
    ),
    ("STATS_FLUSH_INTERVAL", "Prometheus is scraped, not flushed"),
    ("DISABLE_STATS", "statistics are always on /metrics"),
    (
        "EXTRA_TAGS",
        "add labels in the Prometheus scrape configuration",
    ),
    ("USE_DOG_STATSD", "no DogStatsD: scrape /metrics"),
    ("USE_DOG_STATSD_MOGRIFIERS", "no DogStatsD: scrape /metrics"),
    ("PROMETHEUS_PATH", "the path is /metrics"),
    (
        "PROMETHEUS_MAPPER_YAML",
        "the series already carry the default mapper's names and labels",
    ),
    (
        "PROMETHEUS_RESPONSE_TIME_AS_MILLISECONDS",
        "see portcullis_ratelimit_store_latency_seconds",
    ),
    (
        "REDIS_POOL_SIZE",
        "one multiplexed connection per process, no pool",
    ),
    (
        "REDIS_PIPELINE_WINDOW",
        "one Lua script per request, already one round trip",
    ),
    (
        "REDIS_PIPELINE_LIMIT",
        "one Lua script per request, already one round trip",
    ),
    (
        "REDIS_CLUSTER_PIPELINE_PARALLELISM",
        "cluster slots are called concurrently",
    ),
    (
        "REDIS_TIMEOUT",
        "every store call is bounded by --store-timeout (20ms)",
    ),
    ("REDIS_POOL_ON_EMPTY_BEHAVIOR", "no pool"),
    ("REDIS_POOL_ON_EMPTY_WAIT_DURATION", "no pool"),
    (
        "REDIS_HEALTH_CHECK_ACTIVE_CONNECTION",
        "a lost Redis is a store failure, decided per limit",
    ),
    (
        "REDIS_STARTUP_INITIAL_INTERVAL",
        "Redis is connected in the background with backoff",
    ),
    (
        "REDIS_STARTUP_MAX_INTERVAL",
        "Redis is connected in the background with backoff",
    ),
    (
        "REDIS_STARTUP_MAX_ELAPSED_TIME",
        "Redis is connected in the background with backoff",
    ),
    (
        "EXPIRATION_JITTER_MAX_SECONDS",
        "keys expire with their window",
    ),
    ("DEBUG_HOST", "no debug port"),
    ("DEBUG_PORT", "no debug port"),
    (
        "GRPC_MAX_CONNECTION_AGE",
        "not supported; Envoy balances over HTTP/2 streams",
    ),
    (
        "GRPC_MAX_CONNECTION_AGE_GRACE",
        "not supported; Envoy balances over HTTP/2 streams",
    ),
    (
        "HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED",
        "health is SERVING once listening",
    ),
    (
        "FORCE_START_WITHOUT_INITIAL_CONFIG",
        "files load before serving; a bad file stops the start",
    ),
    (
        "RESPONSE_DYNAMIC_METADATA",
        "descriptor metadata is accepted but not returned",
    ),
    (
        "TRACING_ENABLED",
        "use OTEL_EXPORTER_OTLP_ENDPOINT (or --otlp-endpoint)",
    ),
    (
        "TRACING_EXPORTER_PROTOCOL",
        "spans are exported over OTLP/gRPC",
    ),
    (
        "TRACING_SERVICE_NAME",
        "the service name is portcullis-ratelimit",
    ),
    ("TRACING_SAMPLING_RATE", "sampling follows the parent span"),
];

/// Variables refused at start, and why.
pub const REFUSED: &[(&str, &str)] = &[
    (
        "GRPC_UDS",
        "gRPC over a unix socket is not supported; use GRPC_HOST/GRPC_PORT",
    ),
    (
        "GRPC_SERVER_USE_TLS",
        "TLS on the gRPC port is not supported; keep the port on the pod network behind a NetworkPolicy, or terminate TLS in a sidecar",
    ),
    (
        "REDIS_PERSECOND",
        "a second Redis for per-second limits is not supported; point REDIS_URL at one Redis or a cluster",
    ),
    (
        "REDIS_TLS_SKIP_HOSTNAME_VERIFICATION",
        "certificates are always verified; give the server's CA in REDIS_TLS_CACERT and a certificate naming the host",
    ),
    (
        "MEMCACHE_HOST_PORT",
        "Memcached is not supported; use Redis (REDIS_URL) or the memory store",
    ),
    (
        "MEMCACHE_SRV",
        "Memcached is not supported; use Redis (REDIS_URL) or the memory store",
    ),
    (
        "CONFIG_GRPC_XDS_SERVER_URL",
        "envoyproxy's xDS config type is not supported; use files, or Portcullis' control plane (--xds-addr)",
    ),
];
