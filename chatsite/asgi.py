import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
# Django must be set up before the consumers (and their models) are imported.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from chatsite.request_limits import RequestBodyLimit, install_daphne_body_limit  # noqa: E402
from chatsite.websocket_origin import SameOriginValidator  # noqa: E402
from conversations.api.asgi import ApiApp  # noqa: E402
from conversations.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        # One machine needs no web server in front: Daphne serves /static/ itself. A team
        # behind nginx sets SERVE_STATIC=false and lets nginx serve collectstatic's output.
        # The /v1 API is an ASGI app of its own (conversations/api/asgi.py says why).
        "http": ApiApp(ASGIStaticFilesHandler(django_asgi_app) if settings.SERVE_STATIC
                       else django_asgi_app),
        "websocket": SameOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)

# Bodies over MAX_REQUEST_BODY_BYTES are refused before they are read: in Daphne's HTTP parser,
# which would otherwise store the whole body first (chatsite/request_limits.py), and at the ASGI
# level for any other server.
install_daphne_body_limit(max_bytes=settings.MAX_REQUEST_BODY_BYTES)
application = RequestBodyLimit(application, max_bytes=settings.MAX_REQUEST_BODY_BYTES)

# A streaming server allocates fast (a few objects per token) and makes few reference cycles.
# With CPython's default thresholds the cyclic collector ran about 45 times a second at 200
# concurrent streams and took 6 % of the CPU, each full pass stalling every stream
# (bench/stream.py, GC callbacks). What exists after start-up (modules, settings, URL
# patterns) is frozen out of its scans, and a young collection waits for 50,000 net allocations
# instead of 700.
gc.freeze()
gc.set_threshold(50_000, 20, 20)

