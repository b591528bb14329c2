"""The OpenAPI schema (/api/schema/) and the docs page (/api/docs/), which must work offline."""

from urllib.parse import urlsplit

import pytest
from drf_spectacular.validation import validate_schema

pytestmark = pytest.mark.django_db

PATHS = {
    "/api/v1/messages",
    "/api/v1/messages/{message_id}/feedback",
    "/api/v1/conversations/{conversation_id}",
    "/api/v1/bots/{bot_slug}/messages",
    "/api/v1/bots/{bot_slug}/messages/{message_id}/feedback",
    "/api/v1/bots/{bot_slug}/conversations/{conversation_id}",
}


@pytest.fixture
def schema(client) -> dict:
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def test_the_schema_is_valid_openapi_3_with_every_endpoint(schema):
    validate_schema(schema)  # raises on an invalid document

    assert schema["openapi"].startswith("3.")
    assert set(schema["paths"]) == PATHS


def test_the_schema_documents_the_bearer_key_on_every_operation(schema):
    assert schema["components"]["securitySchemes"]["botApiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "sk_bot_<lookup>_<secret>",
        "description": "A bot's API key, created in the Django admin; the key decides the bot.",
    }
    operations = [op for item in schema["paths"].values() for op in item.values()]
    assert operations and all(op["security"] == [{"botApiKey": []}] for op in operations)


def test_the_schema_documents_the_error_shape_and_the_streamed_answer(schema):
    error = schema["components"]["schemas"]["Error"]
    assert error["properties"]["error"]["$ref"] == "#/components/schemas/ErrorDetail"
    send = schema["paths"]["/api/v1/messages"]["post"]
    assert set(send["responses"]) >= {"200", "202", "400", "401", "403", "413", "415", "429"}
    assert set(send["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    assert send["responses"]["429"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    assert send["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/MessageCreateRequest"
    )


def test_the_docs_page_loads_swagger_ui_from_our_own_static_files(client):
    response = client.get("/api/docs/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "/api/schema/" in html
    assert "cdn" not in html.lower() and "https://" not in html


@pytest.mark.django_db(transaction=True)
def test_the_docs_page_renders_every_endpoint_in_a_browser_with_no_internet(page, live_server):
    local = urlsplit(live_server.url).netloc
    outside = []

    def only_local(route):
        if urlsplit(route.request.url).netloc == local:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    page.goto(f"{live_server.url}/api/docs/")

    page.locator(".opblock").first.wait_for()
    assert page.locator(".opblock").count() == 6
    assert page.locator("button.authorize").count() == 1
    assert "Support Bot API" in page.locator(".info .title").inner_text()
    assert outside == []
