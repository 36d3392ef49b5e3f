from django.contrib.auth import get_user_model
from django.contrib.auth.views import LoginView as DjangoLoginView

from accounts.forms import LoginForm


class LoginView(DjangoLoginView):
    authentication_form = LoginForm

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
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
