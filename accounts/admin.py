from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from accounts.forms import AdminLoginForm
from accounts.models import User

admin.site.register(User, UserAdmin)

# The admin's sign-in counts and refuses failed sign-ins as the login page does, or it would be
# a way around the throttle (accounts/throttle.py).
admin.site.login_form = AdminLoginForm
