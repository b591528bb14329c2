"""The widget in headless Chromium: a shopper asks, rates, asks for a person; hostile pages cannot break it.

Shops' pages are served by tiny web sites on other loopback ports, so they have origins of
their own (one allowed, one not); the script and the API always come from the live server,
as they would from our host in production. (Loopback for both: Chromium refuses a page on
a made-up public origin loading anything from localhost.)
"""

import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from chatbot.models import Bot
from chatbot.widget.identity import identity_sign
from conversations.models import Contact, Conversation, Message
from knowledge.models import Document
from tests.chatbot.shop import HOURS
from tests.conftest import PROJECT_DIR, wait_until
from tests.knowledge.helpers import ingest, make_knowledge_base, paste

pytestmark = pytest.mark.django_db(transaction=True)

SCREENSHOTS = PROJECT_DIR / "var" / "screenshots"
HOURS_URL = "https://saomai.example/help/hours"
ANSWER_WAIT = 30_000  # ms: the first answer also loads the local embedding model
HOSTILE_CSS = """
* { color: red !important; font-size: 40px !important; font-family: "Comic Sans MS", cursive !important;
    line-height: 3 !important; letter-spacing: 5px !important; box-sizing: content-box !important; }
button { display: none !important; }
div { display: none !important; transform: scale(3) !important; }
textarea { visibility: hidden !important; }
.launcher, .panel, [role=dialog] { display: none !important; }
"""
# What the widget looks like, read from its shadow root: the same on a clean and a hostile page.
STYLE_PROBE = """() => {
  const root = document.querySelector("[data-chat-widget]").shadowRoot;
  const pick = (selector, names) => {
    const style = getComputedStyle(root.querySelector(selector));
    return Object.fromEntries(names.map((name) => [name, style.getPropertyValue(name)]));
  };
  const box = (selector) => {
    const rect = root.querySelector(selector).getBoundingClientRect();
    return [rect.width, rect.height].map(Math.round);
  };
  return {
    launcher: pick(".launcher", ["display", "background-color", "color", "width", "height"]),
    panel: {...pick(".panel", ["display", "background-color", "font-size"]), size: box(".panel")},
    title: pick(".title", ["font-size", "color", "font-family", "line-height"]),
    bubble: pick(".msg-assistant .bubble", ["font-size", "color", "background-color", "letter-spacing"]),
    input: {...pick("textarea", ["font-size", "visibility", "color"]), size: box("textarea")},
    send: pick(".send", ["display", "width"]),
    handoff: {...pick(".handoff", ["display", "font-size"]), size: box(".handoff")},
  };
}"""
# Records what the message log goes through while an answer arrives.
LOG_RECORDER = """() => {
  const log = document.querySelector("[data-chat-widget]").shadowRoot.querySelector(".log");
  window.__log = [];
  new MutationObserver(() => {
    const answers = log.querySelectorAll(".msg-assistant:not(.typing) .text");
    window.__log.push({
      typing: Boolean(log.querySelector(".typing")),
      answers: answers.length,
      last: answers.length ? answers[answers.length - 1].textContent : "",
    });
  }).observe(log, {childList: true, subtree: true, characterData: true});
}"""


class Site:
    """A web site of its own on a free loopback port, serving the pages put in `pages`."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(self.path.split("?")[0])
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write((body or "not found").encode())

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def shop_site() -> Iterator[Site]:
    site = Site()
    yield site
    site.close()


@pytest.fixture
def other_site() -> Iterator[Site]:
    site = Site()
    yield site
    site.close()


@pytest.fixture
def demo_bot(fresh_redis, shop_site) -> Bot:
    """The demo page's bot (slug "demo") on a small knowledge base whose hours page has a web address."""
    knowledge_base = make_knowledge_base("Sao Mai")
    document = paste(knowledge_base, HOURS, title="Store hours")
    ingest(document)
    # A suite's Celery worker may have claimed the version first: wait for either to finish.
    wait_until(
        lambda: Document.objects.get(pk=document.pk).status == Document.Status.READY,
        timeout=60,
        message="the hours document to be ready",
    )
    Document.objects.filter(pk=document.pk).update(source_url=HOURS_URL)
    return Bot.objects.create(
        name="Sao Mai assistant",
        slug="demo",
        knowledge_base=knowledge_base,
        widget_allowed_origins=shop_site.origin,
    )


def host_page(live_server, bot: Bot, *, head: str = "", attributes: str = "") -> str:
    """A page of some other site embedding the widget with the one tag."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{head}</head><body><h1>A shop</h1><p>Products.</p><button id=own>The page's own button</button>"
        f'<script src="{live_server.url}/static/chatbot/widget.js" data-bot="{bot.widget_key}" '
        f'data-lang="en" {attributes} async></script></body></html>'
    )


def shadow(page, script: str):
    return page.evaluate(
        f"() => {{ const root = document.querySelector('[data-chat-widget]').shadowRoot; {script} }}"
    )


def ask(page, text: str) -> None:
    box = page.get_by_role("textbox", name=re.compile("Your question|Câu hỏi của bạn"))
    box.fill(text)
    box.press("Enter")


def wait_for_answers(page, count: int) -> None:
    """Until `count` stored answers are shown (a stored answer gets its rating buttons)."""
    expect(page.locator("[data-chat-widget] .msg-assistant .rate")).to_have_count(count, timeout=ANSWER_WAIT)


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.screenshot(path=str(path))
    return path


def test_on_the_demo_page_a_shopper_sees_the_answer_stream_with_its_source_rates_it_and_asks_for_a_person(
    page, live_server, gemini_server, demo_bot
):
    gemini_server.script_reply("The Sao Mai shop opens from 8 am to 10 pm every day [1].", pieces=4)
    gemini_server.event_delay = 0.3  # pieces arrive apart, as from a real model
    question = "What time does the shop open?"

    page.goto(f"{live_server.url}/widget/demo/?lang=en")
    page.get_by_role("button", name="Open the support chat").click()
    dialog = page.get_by_role("dialog", name="Sao Mai assistant")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(demo_bot.greeting_en)
    page.evaluate(LOG_RECORDER)
    ask(page, question)
    wait_for_answers(page, 1)

    reply = Message.objects.get(role=Message.Role.ASSISTANT)
    assert reply.provider == "gemini" and "8 am to 10 pm" in reply.text
    expect(page.locator("[data-chat-widget] .msg-assistant .text").last).to_have_text(reply.text)
    link = dialog.get_by_role("link", name=re.compile(r"\[1\] Store hours"))
    expect(link).to_have_attribute("href", HOURS_URL)
    expect(link).to_have_attribute("target", "_blank")
    # The typing state came first, then the text grew piece by piece to the stored answer.
    log = page.evaluate("window.__log")
    first_text = next(index for index, entry in enumerate(log) if entry["answers"] == 2 and entry["last"])
    assert any(entry["typing"] for entry in log[:first_text])
    partial = {entry["last"] for entry in log[first_text:] if entry["answers"] == 2} - {reply.text}
    assert partial and all(reply.text.startswith(text) for text in partial)
    screenshot(page, "widget-answer.png")

    helpful = dialog.get_by_role("button", name="Helpful", exact=True)
    helpful.click()
    expect(helpful).to_have_attribute("aria-pressed", "true")
    expect(dialog.get_by_role("button", name="Not helpful")).to_have_attribute("aria-pressed", "false")
    wait_until(lambda: Message.objects.get(pk=reply.pk).feedback == "up", timeout=10, message="the rating")

    dialog.get_by_role("button", name="Talk to a person").click()
    expect(dialog).to_contain_text(demo_bot.handoff_en)
    expect(dialog).to_contain_text("A person will reply to you right here.")
    expect(dialog.get_by_role("button", name="Talk to a person")).to_be_hidden()
    conversation = Conversation.objects.get()
    assert conversation.status == Conversation.Status.WAITING_FOR_HUMAN and conversation.channel == "web"

    # A reload keeps the panel open and shows the earlier turns, the rating and the handoff.
    page.reload()
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(question)
    expect(dialog.get_by_role("button", name="Helpful", exact=True)).to_have_attribute("aria-pressed", "true")
    expect(dialog).to_contain_text(demo_bot.handoff_en)
    expect(dialog.get_by_role("button", name="Talk to a person")).to_be_hidden()


def test_keyboard_only_tab_to_the_launcher_enter_opens_type_and_enter_sends_escape_closes(
    page, live_server, demo_bot
):
    page.goto(f"{live_server.url}/widget/demo/?lang=en")
    page.get_by_role("button", name="Open the support chat").wait_for()
    on_launcher = """() => {
      const host = document.querySelector("[data-chat-widget]");
      return document.activeElement === host && host.shadowRoot.activeElement.classList.contains("launcher");
    }"""

    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate(on_launcher):
            break
    else:
        pytest.fail("Tab never reached the chat launcher")
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    assert shadow(page, "return root.activeElement.tagName;") == "TEXTAREA"
    page.keyboard.type("What time does the shop open?")
    page.keyboard.press("Enter")
    wait_for_answers(page, 1)
    page.keyboard.press("Escape")

    expect(dialog).to_be_hidden()
    assert page.evaluate(on_launcher)
    assert Message.objects.filter(role=Message.Role.USER, text="What time does the shop open?").exists()
    launcher = page.get_by_role("button", name="Open the support chat")
    expect(launcher).to_have_attribute("aria-expanded", "false")
    # The focus ring is drawn for keyboard users.
    assert shadow(page, "return getComputedStyle(root.activeElement).outlineStyle;") == "solid"


def test_a_host_pages_hostile_css_does_not_reach_the_widget(chromium, live_server, demo_bot, shop_site):
    shop_site.pages["/plain"] = host_page(live_server, demo_bot)
    shop_site.pages["/hostile"] = host_page(live_server, demo_bot, head=f"<style>{HOSTILE_CSS}</style>")

    looks = {}
    for name in ("plain", "hostile"):
        context = chromium.new_context(viewport={"width": 1280, "height": 900})  # a first visit each time
        try:
            page = context.new_page()
            page.goto(f"{shop_site.origin}/{name}")
            page.get_by_role("button", name="Open the support chat").click()
            expect(page.locator("[data-chat-widget] .msg-assistant")).to_have_count(1)  # the greeting
            looks[name] = page.evaluate(STYLE_PROBE)
            if name == "hostile":
                assert page.evaluate("getComputedStyle(document.getElementById('own')).display") == "none"
                screenshot(page, "widget-hostile-page.png")
        finally:
            context.close()

    assert looks["hostile"] == looks["plain"]
    assert looks["plain"]["launcher"]["display"] == "flex"
    assert looks["plain"]["input"]["visibility"] == "visible"


def test_html_and_script_in_messages_are_shown_as_text_and_never_run(
    page, live_server, gemini_server, demo_bot
):
    typed = '<img src=x onerror="window.__pwned = 1"><script>window.__pwned = 2</script>'
    gemini_server.script_reply('<b>Bold</b> <img src=y onerror="window.__pwned = 3"> opens at 8 am [1]')

    page.goto(f"{live_server.url}/widget/demo/?lang=en")
    page.get_by_role("button", name="Open the support chat").click()
    ask(page, typed)
    wait_for_answers(page, 1)

    expect(page.locator("[data-chat-widget] .msg-user .text")).to_have_text(typed)
    expect(page.locator("[data-chat-widget] .msg-assistant .text").last).to_contain_text(
        '<b>Bold</b> <img src=y onerror="window.__pwned = 3">'
    )
    assert page.evaluate("window.__pwned") is None
    assert shadow(page, "return root.querySelectorAll('img, script, b, iframe').length;") == 0
    assert Message.objects.get(role=Message.Role.USER).text == typed  # stored as written


def test_a_page_on_a_disallowed_origin_is_refused_and_nothing_is_stored(
    page, live_server, demo_bot, other_site
):
    other_site.pages["/"] = host_page(live_server, demo_bot)

    with page.expect_response(re.compile(r"/widget/api/.+/config")) as config:
        page.goto(f"{other_site.origin}/")
    page.get_by_role("button", name="Open the support chat").click()

    assert config.value.status == 403
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("This chat is not enabled for this website.")
    expect(dialog.get_by_role("textbox", name="Your question")).to_be_disabled()
    # Writes forced from the page: a preflighted one is stopped by the browser, and a "simple"
    # one the browser sends without asking is refused by the server.
    api = f"{live_server.url}/widget/api/{demo_bot.widget_key}/messages"
    outcomes = page.evaluate(
        """async (api) => {
          const visitor = "0b9f6c0e-8e0a-4d39-9f57-2f1e7d5b9a11";
          const status = (request) => request.then((response) => response.status, () => "blocked");
          const json = status(fetch(api, {method: "POST", body: JSON.stringify({text: "hi"}),
            headers: {"Content-Type": "application/json", "X-Widget-Visitor": visitor}}));
          const simple = status(fetch(api, {method: "POST", body: "hi"}));
          return [await json, await simple];
        }""",
        api,
    )
    assert outcomes == ["blocked", 403]
    assert not Contact.objects.exists() and not Message.objects.exists()


def test_on_a_phone_the_panel_fills_the_screen_and_works(page, live_server, demo_bot):
    page.set_viewport_size({"width": 375, "height": 667})

    page.goto(f"{live_server.url}/widget/demo/?lang=vi")
    page.get_by_role("button", name="Mở khung trò chuyện hỗ trợ").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    box = dialog.bounding_box()
    assert (box["x"], box["y"], box["width"], box["height"]) == (0, 0, 375, 667)
    for control in (
        dialog.get_by_role("textbox", name="Câu hỏi của bạn"),
        dialog.get_by_role("button", name="Gửi"),
        dialog.get_by_role("button", name="Đóng khung trò chuyện"),
        dialog.get_by_role("button", name="Nói chuyện với nhân viên"),
    ):
        expect(control).to_be_in_viewport()
    ask(page, "Cửa hàng mở cửa lúc mấy giờ?")
    wait_for_answers(page, 1)
    expect(page.locator("[data-chat-widget] .msg-assistant").last).to_be_in_viewport()
    assert screenshot(page, "widget-phone.png").stat().st_size > 5_000

    dialog.get_by_role("button", name="Đóng khung trò chuyện").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("button", name="Mở khung trò chuyện hỗ trợ")).to_be_in_viewport()


def test_a_logged_in_customer_signed_by_the_shop_is_the_same_contact_on_another_device(
    chromium, page, live_server, demo_bot, shop_site
):
    user_hash = identity_sign(secret=demo_bot.widget_identity_secret, user_id="khach-42")
    signed = f'data-user-id="khach-42" data-user-hash="{user_hash}" data-user-name="Nguyễn Thị Lan"'
    shop_site.pages["/account"] = host_page(live_server, demo_bot, attributes=signed)

    page.goto(f"{shop_site.origin}/account")
    page.get_by_role("button", name="Open the support chat").click()
    ask(page, "What time does the shop open?")
    wait_for_answers(page, 1)

    contact = Contact.objects.get()
    assert (contact.external_id, contact.display_name) == ("user:khach-42", "Nguyễn Thị Lan")
    other_device = chromium.new_context(viewport={"width": 1280, "height": 900})
    try:
        laptop = other_device.new_page()
        laptop.goto(f"{shop_site.origin}/account")
        laptop.get_by_role("button", name="Open the support chat").click()
        expect(laptop.get_by_role("dialog")).to_contain_text("What time does the shop open?")
    finally:
        other_device.close()
    assert Contact.objects.count() == 1


def test_an_admin_copies_the_tag_from_the_bot_page_and_rotates_the_identity_secret(
    page, live_server, demo_bot
):
    User.objects.create_superuser("boss", password="secret-pw-1")
    old_secret = demo_bot.widget_identity_secret

    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", "secret-pw-1")
    page.click("button[type=submit]")
    page.goto(f"{live_server.url}/admin/chatbot/bot/{demo_bot.pk}/change/")

    snippet = page.locator("pre.widget-snippet")
    script = f"{live_server.url}/static/chatbot/widget.js"
    expect(snippet).to_have_text(f'<script src="{script}" data-bot="{demo_bot.widget_key}" async></script>')
    expect(page.locator("code.widget-identity-secret")).to_have_text(re.compile(f"{old_secret[-4:]}$"))
    snippet.scroll_into_view_if_needed()
    screenshot(page, "widget-admin.png")
    page.get_by_role("link", name=re.compile("Rotate widget identity secret")).click()
    page.get_by_role("button", name=re.compile("Rotate the secret")).click()

    new_secret = page.locator("code.widget-new-secret").inner_text()
    demo_bot.refresh_from_db()
    assert new_secret == demo_bot.widget_identity_secret != old_secret
