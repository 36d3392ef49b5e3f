from django.urls import path

from conversations import usage_views, views

urlpatterns = [
    path("", views.chat, name="chat"),
    path("c/<uuid:conversation_id>/", views.chat, name="conversation"),
    path("usage/", usage_views.my_usage, name="usage"),
    path("usage/team/", usage_views.team_usage, name="usage-team"),
    path("api/conversations/", views.conversation_list, name="conversation-list"),
    path("api/conversations/<uuid:conversation_id>/rename/", views.conversation_rename,
         name="conversation-rename"),
    path("api/conversations/<uuid:conversation_id>/delete/", views.conversation_delete,
         name="conversation-delete"),
]
