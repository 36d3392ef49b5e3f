from django.conf import settings
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView as DjangoLoginView
from django.contrib.auth.views import redirect_to_login
from django.core.cache import cache
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csp import csp_override
from django.views.decorators.http import require_GET, require_POST

from accounts import api_keys
from accounts.actions import do_set_show_api_conversations
from accounts.forms import ApiKeyForm, LoginForm
from accounts.providers import form_action_policy, sign_in_buttons


class LoginView(DjangoLoginView):
    """The one sign-in page: a button per identity provider, and the password form for local
    accounts unless SSO_ONLY (then a password sent here anyway is refused unread)."""

    authentication_form = LoginForm

    def dispatch(self, request, *args, **kwargs):
        if settings.SSO_ONLY and request.method == "POST":
            return HttpResponseNotAllowed(["GET"])
        self.buttons = sign_in_buttons(request)
        response = super().dispatch(request, *args, **kwargs)
        # The buttons' forms end in a redirect to the provider, which form-action governs too.
        return csp_override(form_action_policy(self.buttons))(lambda _: response)(request)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["sso_buttons"] = self.buttons
        context["sso_only"] = settings.SSO_ONLY
        # The first run has no accounts: say how to make one instead of a bare form.
        context["no_users"] = not get_user_model().objects.exists()
        return context

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if form.lockout:
            # Refused unchecked: the page says for how long (templates/registration/login.html).
            response.status_code = 429
            response["Retry-After"] = str(form.lockout.retry_after)
        return response


def admin_login(request, extra_context=None):
    """The admin's sign-in: its password form, or with SSO_ONLY the login page's buttons."""
    if settings.SSO_ONLY:
        return redirect_to_login(request.GET.get("next") or "/admin/")
    return admin.site.login(request, extra_context)


def admin_password_change(request, extra_context=None):
    """The admin's own-password page; with SSO_ONLY there are no passwords to change."""
    if settings.SSO_ONLY:
        raise Http404
    return admin.site.admin_view(admin.site.password_change)(request, extra_context)


# --- the person's own page: API keys and the chat list's setting ---------------------------------


@require_GET
@login_required
def account(request: HttpRequest) -> HttpResponse:
    return _account_page(request, form=ApiKeyForm.fresh())


@never_cache  # the answer holds a new key: no browser or proxy may keep a copy of it
@require_POST
@login_required
def account_create_key(request: HttpRequest) -> HttpResponse:
    """Makes a key and shows it in this answer, the only time it is shown: it is neither stored
    nor put in the session, so a reload of the account page (GET) no longer has it."""
    form = ApiKeyForm(request.POST)
    if form.is_valid():
        # A form already answered (the browser's reload sends it again): its key is in the
        # list, and is not shown again. Kept as long as a form may sit open in a tab.
        once = f"account:new-key:{request.user.pk}:{form.cleaned_data['once']}"
        if not cache.add(once, True, timeout=24 * 3600):
            return _account_page(request, form=ApiKeyForm.fresh(), resent=True, status=409)
        try:
            key, raw = api_keys.do_create_api_key(
                user=request.user, name=form.cleaned_data["name"],
                expires_at=form.expires_at(now=timezone.now()))
        except api_keys.ApiKeyInvalid as exc:
            form.add_error("name", str(exc))
        else:
            return _account_page(request, form=ApiKeyForm.fresh(), new_key=key, new_raw=raw)
    return _account_page(request, form=form, status=400)


@require_POST
@login_required
def account_revoke_key(request: HttpRequest, key_id: int) -> HttpResponse:
    try:
        api_keys.do_revoke_api_key(user=request.user, key_id=key_id)
    except api_keys.ApiKeyNotFound:
        raise Http404("No such API key.") from None
    return redirect("account")


@require_POST
@login_required
def account_preferences(request: HttpRequest) -> HttpResponse:
    # An unticked checkbox is not sent at all: its absence is "off".
    do_set_show_api_conversations(user=request.user,
                                  show=request.POST.get("show_api_conversations") == "on")
    return redirect("account")


def _account_page(request: HttpRequest, *, form: ApiKeyForm, new_key=None, new_raw=None,
                  resent: bool = False, status: int = 200) -> HttpResponse:
    return render(request, "accounts/account.html", {
        "form": form,
        "keys": api_keys.keys_for(user=request.user),
        "new_key": new_key,
        "new_raw": new_raw,
        "resent": resent,
        "max_keys": api_keys.MAX_LIVE_KEYS,
    }, status=status)
