"""Django settings. Values that differ between machines come from chatsite.env (the README's
configuration table); everything else is fixed here."""

from __future__ import annotations

import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

from chatsite import env

BASE_DIR = Path(__file__).resolve().parent.parent
# Where the embedded defaults keep their files (SQLite database, generated secret key).
DATA_DIR = Path(env.text("DATA_DIR", str(BASE_DIR / "var"))).resolve()

DEBUG = env.flag("DEBUG", default=False)


def _secret_key() -> str:
    key = env.text("SECRET_KEY")
    if key:
        if len(key) < 50 or len(set(key)) < 5:
            raise ImproperlyConfigured(
                "SECRET_KEY is too weak: use at least 50 random characters "
                "(python -c 'import secrets; print(secrets.token_urlsafe(50))')."
            )
        return key
    # First run on one machine: make a strong key once and keep it beside the database, so
    # sessions survive restarts. A team sets SECRET_KEY explicitly (the same on every process).
    path = DATA_DIR / "secret_key"
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(64))
    return path.read_text().strip()


def _field_encryption_key() -> str:
    key = env.text("FIELD_ENCRYPTION_KEY")
    # Unset is fine (agents.fields derives its key from SECRET_KEY); a short key is not, since
    # it alone guards every API key in a database dump.
    if key and (len(key) < 32 or len(set(key)) < 5):
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEY is too weak: use at least 32 random characters "
            "(python -c 'import secrets; print(secrets.token_urlsafe(32))')."
        )
    return key


SECRET_KEY = _secret_key()
# Older keys, still accepted while a rotation is under way: Django checks signatures (sessions,
# password resets) against them, and agents.fields decrypts stored secrets with them.
SECRET_KEY_FALLBACKS = env.csv("SECRET_KEY_FALLBACKS")
FIELD_ENCRYPTION_KEY = _field_encryption_key()
FIELD_ENCRYPTION_KEY_FALLBACKS = env.csv("FIELD_ENCRYPTION_KEY_FALLBACKS")
ALLOWED_HOSTS = env.csv("ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env.csv("CSRF_TRUSTED_ORIGINS")
for _origin in CSRF_TRUSTED_ORIGINS:
    if not _origin.startswith(("http://", "https://")):
        raise ImproperlyConfigured(
            f"CSRF_TRUSTED_ORIGINS entries must start with http:// or https://, not {_origin!r}."
        )

# Behind a TLS-terminating proxy: secure cookies, HSTS and the redirect all follow this one switch.
HTTPS = env.flag("HTTPS", default=False)
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.integer("HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "allauth.socialaccount.providers.github",
    "accounts",
    "agents",
    "conversations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]

ROOT_URLCONF = "chatsite.urls"
ASGI_APPLICATION = "chatsite.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Model, tool and title text is untrusted: no inline script or style without a nonce, no remote
# images, no framing, no plugins.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.NONCE],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "font-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
}
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
# The page reads the CSRF token from its meta tag, so no script needs the cookie.
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"


def _database() -> dict:
    raw = env.url(
        "DATABASE_URL",
        f"sqlite:///{DATA_DIR / 'db.sqlite3'}",
        schemes=("sqlite", "postgres", "postgresql", "pgsql"),
    )
    config = dj_database_url.parse(raw)
    if config["ENGINE"] == "django.db.backends.sqlite3":
        Path(config["NAME"]).parent.mkdir(parents=True, exist_ok=True)
        # WAL lets readers run while a turn writes; IMMEDIATE avoids "database is locked" on
        # lock upgrades when several async tasks write at once.
        config["OPTIONS"] = {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
        # A local file costs nothing to keep open; reopening it (and re-running the PRAGMAs)
        # on every request did.
        config["CONN_MAX_AGE"] = None
    else:
        config["CONN_MAX_AGE"] = env.integer("DATABASE_CONN_MAX_AGE", 60)
        config["CONN_HEALTH_CHECKS"] = True
        # channels.testing's live server needs an explicit test database name on PostgreSQL.
        config["TEST"] = {"NAME": f"test_{config['NAME']}_chatsite"}
    return config


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

REDIS_URL = env.url("REDIS_URL", schemes=("redis", "rediss", "unix"))
# channels-redis drops messages silently past a channel's capacity: size it for a burst of
# streamed tokens; clients also detect gaps by sequence number and refetch.
CHANNEL_CAPACITY = env.integer("CHANNEL_CAPACITY", 2000, minimum=100)
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 reads with a 5 s socket timeout by default, which kills the
                # layer's blocking 5 s BZPOPMIN on an idle socket (channels_redis#422).
                "hosts": [{"address": REDIS_URL, "socket_timeout": 15}],
                "capacity": CHANNEL_CAPACITY,
                "expiry": 60,
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "chatsite.channel_layers.SweepingInMemoryChannelLayer",
            "CONFIG": {"capacity": CHANNEL_CAPACITY, "expiry": 60},
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat"
LOGOUT_REDIRECT_URL = "login"

# Company sign-in (OpenID Connect, through django-allauth; accounts/sso.py, accounts/adapters.py).
# One provider comes from the environment; admins add more as "Social applications".
OIDC_SERVER_URL = env.url("OIDC_SERVER_URL", schemes=("http", "https"))
OIDC_CLIENT_ID = env.text("OIDC_CLIENT_ID")
OIDC_CLIENT_SECRET = env.text("OIDC_CLIENT_SECRET")
OIDC_NAME = env.text("OIDC_NAME", "Company SSO")
if OIDC_SERVER_URL and not OIDC_CLIENT_ID:
    raise ImproperlyConfigured("OIDC_SERVER_URL is set but OIDC_CLIENT_ID is not: set both.")
# No local sign-in at all: no password form on any page (the admin's included), no password
# change; `manage.py createsuperuser` still works on the server.
SSO_ONLY = env.flag("SSO_ONLY", default=False)
SSO_GROUPS_CLAIM = env.text("SSO_GROUPS_CLAIM", "groups")
SSO_ADMIN_GROUPS = env.csv("SSO_ADMIN_GROUPS")
SSO_ALLOWED_GROUPS = env.csv("SSO_ALLOWED_GROUPS")

# PKCE for every OpenID Connect app, the admin's included (their own settings may not say).
SOCIALACCOUNT_PROVIDERS: dict = {
    "openid_connect": {"OAUTH_PKCE_ENABLED": True},
    "github": {"OAUTH_PKCE_ENABLED": True},
}
if OIDC_SERVER_URL:
    SOCIALACCOUNT_PROVIDERS["openid_connect"]["APPS"] = [{
        # The id is in the callback URL registered at the provider:
        # /accounts/oidc/sso/login/callback/
        "provider_id": "sso",
        "name": OIDC_NAME,
        "client_id": OIDC_CLIENT_ID,
        "secret": OIDC_CLIENT_SECRET,
        "settings": {"server_url": OIDC_SERVER_URL.rstrip("/"), "oauth_pkce_enabled": True},
    }]
ACCOUNT_ADAPTER = "accounts.adapters.AccountAdapter"
SOCIALACCOUNT_ADAPTER = "accounts.adapters.SocialAccountAdapter"
# Accounts are keyed on the provider and its subject (allauth's SocialAccount), never joined to
# another account by an email address: providers' emails are often unverified or editable by the
# person, and a shared address must not open somebody else's account. Two accounts may therefore
# have the same address, and none is ever asked to confirm one by mail.
SOCIALACCOUNT_EMAIL_AUTHENTICATION = False
SOCIALACCOUNT_EMAIL_AUTHENTICATION_AUTO_CONNECT = False
SOCIALACCOUNT_EMAIL_VERIFICATION = "none"
SOCIALACCOUNT_EMAIL_REQUIRED = False
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_UNIQUE_EMAIL = False
# The first login makes the account, with no form in between.
SOCIALACCOUNT_AUTO_SIGNUP = True
SOCIALACCOUNT_ONLY = SSO_ONLY
# Provider tokens are not needed after the login, so they are not kept.
SOCIALACCOUNT_STORE_TOKENS = False
SOCIALACCOUNT_REQUESTS_TIMEOUT = 10
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https" if HTTPS else "http"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.text("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
SERVE_STATIC = env.flag("SERVE_STATIC", default=True)

# Request bodies larger than this are refused with 413 before they are read (bytes): in
# Daphne's HTTP parser, and again at the ASGI level for other servers (chatsite/request_limits).
MAX_REQUEST_BODY_BYTES = env.integer("MAX_REQUEST_BODY_BYTES", 10 * 1024 * 1024,
                                     minimum=64 * 1024)
# Django's cache holds the failed sign-in and API key counters (accounts/throttle.py): in Redis
# when there is one, so that every process counts the same failures; otherwise in this process's
# memory.
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": REDIS_URL, "KEY_PREFIX": "chatsite"}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# After this many failed sign-ins for one username, or from one client address, within
# LOGIN_FAILURE_WINDOW seconds of the first, sign-ins for it are refused without checking the
# password until the window ends.
LOGIN_FAILURES_PER_ACCOUNT = env.integer("LOGIN_FAILURES_PER_ACCOUNT", 5, minimum=1)
LOGIN_FAILURES_PER_ADDRESS = env.integer("LOGIN_FAILURES_PER_ADDRESS", 20, minimum=1)
LOGIN_FAILURE_WINDOW = env.integer("LOGIN_FAILURE_WINDOW", 15 * 60, minimum=1)
# After this many refused API keys (malformed, unknown, revoked, expired) from one client address
# within API_KEY_FAILURE_WINDOW seconds of the first, that address's API requests are refused
# with 429 before any key is checked, until the window ends (accounts/api_keys.py).
API_KEY_FAILURES_PER_ADDRESS = env.integer("API_KEY_FAILURES_PER_ADDRESS", 20, minimum=1)
API_KEY_FAILURE_WINDOW = env.integer("API_KEY_FAILURE_WINDOW", 15 * 60, minimum=1)

# WebSocket frames from a browser larger than this are refused with an error frame (bytes of
# UTF-8). Daphne itself closes the socket on messages over 1 MiB (--websocket_max_message_size).
WS_MAX_FRAME_BYTES = env.integer("WS_MAX_FRAME_BYTES", 512 * 1024, minimum=1024)
# The largest WebSocket message we send; larger frames go as parts (conversations.frames).
WS_MAX_SEND_BYTES = env.integer("WS_MAX_SEND_BYTES", 256 * 1024, minimum=4096)
# Small frames to a socket go straight onto its TCP socket when nothing is buffered
# (conversations/socket_writer.py); false sends every frame through Daphne's own path.
WS_DIRECT_WRITE = env.flag("WS_DIRECT_WRITE", default=True)
# Longest user message accepted (characters).
MAX_MESSAGE_CHARS = env.integer("MAX_MESSAGE_CHARS", 100_000, minimum=100)
# The /v1 API: the most messages one request may carry, their characters together, and the
# largest max_tokens / max_completion_tokens a client may ask for (each answered with a 400
# before anything is stored or sent upstream).
API_MAX_MESSAGES = env.integer("API_MAX_MESSAGES", 1000, minimum=1)
API_MAX_INPUT_CHARS = env.integer("API_MAX_INPUT_CHARS", 2_000_000, minimum=1000)
MAX_OUTPUT_TOKENS = env.integer("MAX_OUTPUT_TOKENS", 32_768, minimum=1)
# A model's context window in tokens when the admin's model settings give none (agents.models
# LanguageModel), and the currency its prices and every cost are in (a label only).
MODEL_CONTEXT_WINDOW = env.integer("MODEL_CONTEXT_WINDOW", 131_072, minimum=256)
COST_CURRENCY = env.text("COST_CURRENCY", "USD")
# What a budget holds back for a model round's output when the model has no max_output_tokens
# of its own (conversations.budgets).
BUDGET_OUTPUT_TOKENS = env.integer("BUDGET_OUTPUT_TOKENS", 4096, minimum=1)
# A message of MAX_MESSAGE_CHARS characters must fit in a frame (4 bytes each at most, beyond
# ASCII), or the longest allowed messages could not be sent at all.
if WS_MAX_FRAME_BYTES < 4 * MAX_MESSAGE_CHARS + 1024:
    raise ImproperlyConfigured(
        f"WS_MAX_FRAME_BYTES ({WS_MAX_FRAME_BYTES}) must be at least 4 × MAX_MESSAGE_CHARS + "
        f"1024 ({4 * MAX_MESSAGE_CHARS + 1024}): a message of MAX_MESSAGE_CHARS characters "
        "would not fit in one frame."
    )

# The default model server, used until an admin registers providers and agents.
LLM_KIND = env.choice("LLM_KIND", "openai", choices=("openai", "anthropic"))
LLM_BASE_URL = env.url("LLM_BASE_URL", "http://127.0.0.1:11434/v1", schemes=("http", "https"))
LLM_API_KEY = env.text("LLM_API_KEY")
LLM_MODEL = env.text("LLM_MODEL", "gpt-oss:20b")
LLM_FALLBACK_MODELS = env.csv("LLM_FALLBACK_MODELS")
LLM_MAX_CONCURRENCY = env.integer("LLM_MAX_CONCURRENCY", 64, minimum=1)
LLM_MAX_RETRIES = env.integer("LLM_MAX_RETRIES", 3)
LLM_CONNECT_TIMEOUT = env.number("LLM_CONNECT_TIMEOUT", 10.0, minimum=0.01)
LLM_FIRST_TOKEN_TIMEOUT = env.number("LLM_FIRST_TOKEN_TIMEOUT", 120.0, minimum=0.01)
LLM_GAP_TIMEOUT = env.number("LLM_GAP_TIMEOUT", 60.0, minimum=0.01)
LLM_TOTAL_TIMEOUT = env.number("LLM_TOTAL_TIMEOUT", 900.0, minimum=0.01)
# `own`: our HTTP/1.1 client on an asyncio Protocol; `stock`: httpx's own client, the way out if
# ours misbehaves with some server (agents/providers/_transport.py).
LLM_HTTP_TRANSPORT = env.choice("LLM_HTTP_TRANSPORT", "own", choices=("own", "stock"))
# Ask the model for a short title after a conversation's first exchange.
GENERATE_TITLES = env.flag("GENERATE_TITLES", default=True)
SYSTEM_PROMPT = env.text("SYSTEM_PROMPT", "You are a helpful assistant.")

# When a streaming answer is written to the database: after TURN_FLUSH_INTERVAL seconds, then
# at intervals doubling up to TURN_FLUSH_MAX_INTERVAL. The writes are also the turn's heartbeat:
# a streaming message not written for TURN_STALE_AFTER seconds belongs to a dead process.
TURN_FLUSH_INTERVAL = env.number("TURN_FLUSH_INTERVAL", 1.0, minimum=0.05)
TURN_FLUSH_MAX_INTERVAL = env.number("TURN_FLUSH_MAX_INTERVAL", 10.0, minimum=0.05)
TURN_STALE_AFTER = env.number("TURN_STALE_AFTER", 30.0, minimum=1.0)
# Answers one user may have written at once (more sends are refused until one ends).
USER_MAX_CONCURRENT_TURNS = env.integer("USER_MAX_CONCURRENT_TURNS", 3, minimum=1)
# How often each process looks for turns a dead process left unfinished, to end them.
TURN_SWEEP_INTERVAL = env.number("TURN_SWEEP_INTERVAL", 10.0, minimum=0.1)
if TURN_STALE_AFTER <= 2 * TURN_FLUSH_MAX_INTERVAL:
    raise ImproperlyConfigured(
        "TURN_STALE_AFTER must be more than twice TURN_FLUSH_MAX_INTERVAL, or live turns would "
        "be taken for dead ones."
    )
# Days after its last activity a conversation (with its messages and tool calls) is removed by
# `manage.py purge_conversations`, unless it is under legal hold. 0 keeps everything forever:
# deleting the audit record must be a decision someone made, never a default.
RETENTION_DAYS = env.integer("RETENTION_DAYS", 0, minimum=0)

# Tools (MCP). Model rounds one answer may take (each may call tools; an agent may set its own);
# the characters of one tool result the model is given (longer ones are cut, and the cut is
# recorded); how long a call that needs approval waits for a decision before it counts as denied.
TOOL_MAX_ROUNDS = env.integer("TOOL_MAX_ROUNDS", 10, minimum=1)
TOOL_RESULT_MAX_CHARS = env.integer("TOOL_RESULT_MAX_CHARS", 50_000, minimum=100)
TOOL_APPROVAL_TIMEOUT = env.number("TOOL_APPROVAL_TIMEOUT", 900.0, minimum=1.0)

LOG_LEVEL = env.choice("LOG_LEVEL", "info", choices=("debug", "info", "warning", "error"))
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL.upper()},
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}
