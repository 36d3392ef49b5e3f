from django.urls import path

from conversations.api import views

urlpatterns = [
    path("models", views.models, name="api-models"),
    path("chat/completions", views.chat_completions, name="api-chat-completions"),
]
