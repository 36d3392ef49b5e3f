from django.contrib.auth import get_user_model
from django.contrib.auth.views import LoginView as DjangoLoginView


class LoginView(DjangoLoginView):
    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        # The first run has no accounts: say how to make one instead of a bare form.
        context["no_users"] = not get_user_model().objects.exists()
        return context
