"""/api/: version 1 of the REST API, its OpenAPI schema and its docs page.

Each v1 route also exists under /v1/bots/<slug>/: the same, and the key must belong
to that bot (a guard for callers holding keys of several bots).
"""

from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from chatbot.api.errors import api_not_found
from chatbot.api.views import ConversationDetailView, MessageCreateView, MessageFeedbackView

app_name = "api"

messages = MessageCreateView.as_view()
feedback = MessageFeedbackView.as_view()
conversation = ConversationDetailView.as_view()

urlpatterns = [
    path("v1/messages", messages, name="message-create"),
    path("v1/messages/<int:message_id>/feedback", feedback, name="message-feedback"),
    path("v1/conversations/<int:conversation_id>", conversation, name="conversation-detail"),
    path("v1/bots/<slug:bot_slug>/messages", messages, name="bot-message-create"),
    path("v1/bots/<slug:bot_slug>/messages/<int:message_id>/feedback", feedback, name="bot-message-feedback"),
    path(
        "v1/bots/<slug:bot_slug>/conversations/<int:conversation_id>",
        conversation,
        name="bot-conversation-detail",
    ),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    # Last: any other path under /api/ is a JSON 404, not Django's HTML page.
    re_path(r"^", api_not_found),
]
