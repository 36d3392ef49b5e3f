from allauth.socialaccount import admin as socialaccount_admin
from allauth.socialaccount.models import SocialApp
from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.http import Http404

from accounts.api_keys import do_revoke_api_keys
from accounts.forms import AdminLoginForm
from accounts.models import ApiKey, User


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    """Django's, with what SSO did to the account shown (not editable: the provider decides it
    at the next login), and without passwords under SSO_ONLY."""

    fieldsets = (*DjangoUserAdmin.fieldsets,
                 ("Company sign-in (SSO)", {"fields": ("sso_groups", "sso_staff",
                                                       "sso_deactivated")}))
    readonly_fields = ("sso_groups", "sso_staff", "sso_deactivated")

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if not settings.SSO_ONLY or obj is None:
            return fieldsets
        return [(name, {**options, "fields": [f for f in options["fields"] if f != "password"]})
                for name, options in fieldsets]

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        if settings.SSO_ONLY and "password" in form.base_fields:
            # UserChangeForm declares it, so leaving it out of the fieldsets is not enough.
            form = type(form.__name__, (form,), {})
            del form.base_fields["password"]
        return form

    def has_add_permission(self, request):
        # Under SSO_ONLY accounts come from the provider (and superusers from createsuperuser):
        # an account made here could never sign in, since SSO does not join accounts by email.
        return not settings.SSO_ONLY and super().has_add_permission(request)

    def user_change_password(self, request, id, form_url=""):
        if settings.SSO_ONLY:
            raise Http404
        return super().user_change_password(request, id, form_url)

    def save_model(self, request, obj, form, change):
        if "is_active" in form.changed_data:
            # The admin decided: SSO's own deactivation no longer applies, so an account
            # deactivated here is not let back in by its provider's next login.
            obj.sso_deactivated = False
        super().save_model(request, obj, form, change)


# The admin's sign-in counts and refuses failed sign-ins as the login page does, or it would be
# a way around the throttle (accounts/throttle.py).
admin.site.login_form = AdminLoginForm


class SocialAppForm(socialaccount_admin.SocialAppForm):
    """allauth's, with the client secret write-only: the stored secret is never rendered back
    (allauth's form shows it in a text box); leaving the box empty keeps it."""

    secret = forms.CharField(
        required=False, widget=forms.PasswordInput(render_value=False),
        help_text="Never shown again once saved. Leave empty to keep the current secret.")

    def clean_secret(self) -> str:
        entered = self.cleaned_data.get("secret") or ""
        if not entered and self.instance.pk:
            return SocialApp.objects.values_list("secret", flat=True).get(pk=self.instance.pk)
        return entered


class SocialAppAdmin(socialaccount_admin.SocialAppAdmin):
    form = SocialAppForm


admin.site.unregister(SocialApp)
admin.site.register(SocialApp, SocialAppAdmin)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Every person's API keys, by their public part: who has which, when each was last used,
    and a revoke action. Keys are made by their owner (the account page) or by
    `manage.py create_api_key`, never here: the whole key is shown once, to whoever made it.
    Nothing is edited or deleted here (the conversations a key made keep pointing to it)."""

    list_display = ["name", "shown", "user", "created_at", "last_used_at", "expires_at",
                    "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), "created_at", "last_used_at"]
    search_fields = ["name", "prefix", "user__username", "user__email"]
    list_select_related = ["user"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]
    fields = ["name", "shown", "user", "created_at", "last_used_at", "expires_at", "revoked_at"]
    readonly_fields = fields
    actions = ["revoke"]

    @admin.display(description="key")
    def shown(self, key: ApiKey) -> str:
        return key.shown

    @admin.action(description="Revoke the selected API keys", permissions=["change"])
    def revoke(self, request, queryset):
        count = do_revoke_api_keys(keys=queryset)
        for key in queryset:
            self.log_change(request, key, "Revoked")
        self.message_user(request, f"Revoked {count} API key{'' if count == 1 else 's'}: they "
                                   "are refused from the next request on.")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
