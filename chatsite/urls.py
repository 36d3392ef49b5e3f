from django.contrib import admin
from django.urls import include, path

from accounts.views import admin_login, admin_password_change

urlpatterns = [
    # Before the admin's own: with SSO_ONLY its password pages are not served.
    path("admin/login/", admin_login),
    path("admin/password_change/", admin_password_change),
    path("admin/", admin.site.urls),
    path("", include("accounts.urls")),
    path("", include("conversations.urls")),
]
