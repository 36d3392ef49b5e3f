"""The sign-in forms: Django's, with failed sign-ins throttled (accounts/throttle.py).

Both the login page and the admin's login go through `ThrottledLoginMixin.clean`, so neither
can be used to go on guessing a password the other refuses to check.
"""

from __future__ import annotations

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
