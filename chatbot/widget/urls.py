"""/widget/: the demo page and the API the embedded widget (static chatbot/widget.js) calls."""

from django.urls import path, re_path

from chatbot.widget import views

app_name = "widget"

urlpatterns = [
    path("demo/", views.demo, name="demo"),
    path("api/<str:widget_key>/config", views.config, name="config"),
    path("api/<str:widget_key>/conversation", views.conversation, name="conversation"),
    path("api/<str:widget_key>/messages", views.messages, name="messages"),
    path("api/<str:widget_key>/messages/<int:message_id>/feedback", views.feedback, name="feedback"),
    path("api/<str:widget_key>/handoff", views.handoff, name="handoff"),
    re_path(r"^api/", views.api_not_found),
]
