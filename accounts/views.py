from django.conf import settings
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.views import LoginView as DjangoLoginView
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpResponseNotAllowed
from django.views.decorators.csp import csp_override

from accounts.forms import LoginForm
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
