"""The sign-in forms: Django's, with failed sign-ins throttled (accounts/throttle.py); and the
account page's form for a new API key.

Both the login page and the admin's login go through `ThrottledLoginMixin.clean`, so neither
can be used to go on guessing a password the other refuses to check.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm

from accounts import throttle


class ThrottledLoginMixin:
    """For an AuthenticationForm: a sign-in over the limits is refused before the password is
    checked (the error's code is "throttled", and `lockout` says for how long); a failure is
    counted; a success clears the account's count."""

    lockout: throttle.Lockout | None = None

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        address = self.request.META.get("REMOTE_ADDR") if self.request else None
        self.lockout = throttle.login_lockout(username=username, address=address)
        if self.lockout:
            raise forms.ValidationError(self.lockout.message, code="throttled")
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            throttle.do_record_login_failure(username=username, address=address)
            raise
        if self.get_user() is not None:
            throttle.do_clear_login_failures(username=username)
        return cleaned


class LoginForm(ThrottledLoginMixin, AuthenticationForm):
    pass


class AdminLoginForm(ThrottledLoginMixin, AdminAuthenticationForm):
    pass


class ApiKeyForm(forms.Form):
    """A new API key on the account page: a name, and how long it lasts. The name's rules are
    the action's (api_keys.do_create_api_key); this only makes the page's field."""

    EXPIRY_CHOICES = [("7", "7 days"), ("30", "30 days"), ("90", "90 days"),
                      ("365", "1 year"), ("never", "Never")]

    name = forms.CharField(max_length=100, help_text="What the key is for, e.g. “laptop script”.")
    expires = forms.ChoiceField(choices=EXPIRY_CHOICES, initial="90", label="Expires after")
    # A fresh value in every form shown: the browser's "reload" of the answer sends the same
    # form again, and must not make a second key (accounts.views.account_create_key).
    once = forms.CharField(widget=forms.HiddenInput, max_length=64)

    @classmethod
    def fresh(cls) -> ApiKeyForm:
        return cls(initial={"once": secrets.token_urlsafe(16)})

    def expires_at(self, *, now):
        """When the chosen expiry ends, from `now`; None for never. Only on a valid form."""
        chosen = self.cleaned_data["expires"]
        return None if chosen == "never" else now + timedelta(days=int(chosen))
