from django.urls import path

from chatbot.zalo import views

app_name = "zalo"

urlpatterns = [
    path("<slug:bot_slug>/", views.webhook, name="webhook"),
]
