/*
 * The support chat widget. One tag on the shop's page:
 *
 *   <script src="https://HOST/static/chatbot/widget.js" data-bot="wk_..." async></script>
 *
 * Optional: data-lang="vi|en", and for a logged-in customer data-user-id, data-user-hash
 * (hex HMAC-SHA256 of the id under the bot's identity secret, computed on the shop's
 * server) and data-user-name. No framework, no cookies; everything it draws lives in a
 * shadow root, so the page's styles cannot reach it and its styles cannot reach the page.
 * Text from people and the bot is only ever set with textContent. See docs/widget.md.
 */
(() => {
  "use strict";

  const script = document.currentScript; // only set while this file first runs, async or not
  if (!script || !script.src) {
    console.error("chat widget: load it with a <script src=... data-bot=...> tag");
    return;
  }
  const key = (script.getAttribute("data-bot") || "").trim();
  if (!key) {
    console.error('chat widget: the script tag needs data-bot="wk_..." (the bot\'s widget key)');
    return;
  }
  const loaded = (window.__chatWidgets = window.__chatWidgets || {});
  if (loaded[key]) return; // the tag was pasted twice
  loaded[key] = true;

  const API = `${new URL(script.src, document.baseURI).origin}/widget/api/${encodeURIComponent(key)}`;
  const USER_ID = script.getAttribute("data-user-id") || "";
  const USER_HASH = script.getAttribute("data-user-hash") || "";
  const USER_NAME = script.getAttribute("data-user-name") || "";
  const POLL_MS = 10000; // while a person has the conversation, their replies are fetched this often

  const STRINGS = {
    vi: {
      open: "Mở khung trò chuyện hỗ trợ",
      close: "Đóng khung trò chuyện",
      title: "Hỗ trợ khách hàng",
      input: "Câu hỏi của bạn",
      placeholder: "Nhập câu hỏi…",
      send: "Gửi",
      typing: "Trợ lý đang trả lời…",
      you: "Bạn:",
      bot: "Trợ lý:",
      staff: "Nhân viên:",
      sources: "Nguồn",
      rate: "Câu trả lời này có hữu ích không?",
      up: "Hữu ích",
      down: "Chưa hữu ích",
      thanks: "Cảm ơn bạn đã góp ý!",
      handoff: "Nói chuyện với nhân viên",
      withPerson: "Nhân viên sẽ trả lời bạn ngay tại đây.",
      notSent: "Chưa gửi được",
      notAllowed: "Khung trò chuyện chưa được bật cho trang web này.",
      unavailable: "Khung trò chuyện hiện không hoạt động.",
      identity: "Không xác minh được tài khoản của bạn. Vui lòng tải lại trang hoặc đăng nhập lại.",
      rateLimited: (seconds) => `Bạn gửi hơi nhanh. Vui lòng thử lại sau ${seconds} giây.`,
      tooLong: (limit) => `Tin nhắn quá dài: tối đa ${limit} ký tự.`,
      empty: "Bạn hãy nhập câu hỏi trước khi gửi.",
      network: "Không kết nối được. Vui lòng kiểm tra mạng rồi thử lại.",
      failed: "Đã có lỗi xảy ra. Vui lòng thử lại.",
    },
    en: {
      open: "Open the support chat",
      close: "Close the support chat",
      title: "Customer support",
      input: "Your question",
      placeholder: "Type your question…",
      send: "Send",
      typing: "The assistant is typing…",
      you: "You:",
      bot: "Assistant:",
      staff: "Staff:",
      sources: "Sources",
      rate: "Was this answer helpful?",
      up: "Helpful",
      down: "Not helpful",
      thanks: "Thank you for your feedback!",
      handoff: "Talk to a person",
      withPerson: "A person will reply to you right here.",
      notSent: "Not sent",
      notAllowed: "This chat is not enabled for this website.",
      unavailable: "This chat is not available right now.",
      identity: "We could not confirm your account. Please reload the page or log in again.",
      rateLimited: (seconds) => `You are sending messages a little fast. Please try again in ${seconds} seconds.`,
      tooLong: (limit) => `That message is too long: ${limit} characters at most.`,
      empty: "Please type a question first.",
      network: "We could not connect. Please check your connection and try again.",
      failed: "Something went wrong. Please try again.",
    },
  };

  const LANG = pickLanguage(script.getAttribute("data-lang"));
  const T = STRINGS[LANG];

  function pickLanguage(wanted) {
    const candidates = [wanted, ...(navigator.languages || []), navigator.language];
    for (const candidate of candidates) {
      const code = String(candidate || "").toLowerCase().slice(0, 2);
      if (code in STRINGS) return code;
    }
    return "vi";
  }

  // ---- visitor identity -------------------------------------------------------------------

  function newId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID(); // secure contexts only
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  const VISITOR = (() => {
    const storageKey = `chat-widget:${key}:visitor`;
    try {
      let id = localStorage.getItem(storageKey);
      if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id || "")) {
        id = newId();
        localStorage.setItem(storageKey, id);
      }
      return id;
    } catch (blocked) {
      return newId(); // storage off (private mode, policy): a visitor for this page view only
    }
  })();

  function identityHeaders() {
    // Header values must be ASCII: ids and names go percent-encoded (UTF-8).
    const headers = { "X-Widget-Visitor": VISITOR };
    if (USER_ID) {
      headers["X-Widget-User"] = encodeURIComponent(USER_ID);
      headers["X-Widget-User-Hash"] = USER_HASH;
      if (USER_NAME) headers["X-Widget-User-Name"] = encodeURIComponent(USER_NAME);
    }
    return headers;
  }

  // ---- the API ------------------------------------------------------------------------------

  class Failure extends Error {
    constructor(code, message, retryAfter) {
      super(message || code);
      this.code = code;
      this.retryAfter = retryAfter || 0;
    }
  }

  async function call(path, { method = "GET", body, identity = true } = {}) {
    const headers = identity ? identityHeaders() : {};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(API + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "omit",
        mode: "cors",
        cache: "no-store",
      });
    } catch (unreachable) {
      throw new Failure("network", String(unreachable));
    }
    if (!response.ok) throw await failureOf(response);
    return response;
  }

  async function failureOf(response) {
    let code = `http_${response.status}`;
    let message = "";
    let retryAfter = parseInt(response.headers.get("Retry-After") || "0", 10);
    try {
      const error = (await response.json()).error;
      code = error.code || code;
      message = error.message || "";
      retryAfter = error.retry_after || retryAfter;
    } catch (notJson) {
      // keep the HTTP status as the code
    }
    return new Failure(code, message, retryAfter);
  }

  function explain(failure) {
    console.warn(`chat widget: ${failure.code}: ${failure.message}`);
    switch (failure.code) {
      case "rate_limited":
        return T.rateLimited(failure.retryAfter || 60);
      case "origin_not_allowed":
      case "origin_required":
        return T.notAllowed;
      case "unknown_widget":
      case "bot_inactive":
        return T.unavailable;
      case "invalid_identity":
      case "identity_not_enabled":
      case "invalid_user_id":
        return T.identity;
      case "message_too_long":
      case "body_too_large":
        return T.tooLong(maxChars);
      case "empty_message":
        return T.empty;
      case "network":
        return T.network;
      default:
        return T.failed;
    }
  }

  // Server-sent events from a fetch body: "event: name\ndata: json\n\n" blocks.
  async function readEvents(response, onEvent) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      buffer += decoder.decode(value || new Uint8Array(0), { stream: !done }).replace(/\r\n/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (data.length) onEvent(name, JSON.parse(data.join("\n")));
      }
      if (done) return;
    }
  }

  // ---- the interface ------------------------------------------------------------------------

  const ICONS = {
    chat: "M20 2H4c-1.1 0-2 .9-2 2v18l4-4h14c1.1 0 2-.9 2-2V4c0-1.1-.9-2-2-2z",
    close: "M19 6.41 17.59 5 12 10.59 6.41 5 5 6.41 10.59 12 5 17.59 6.41 19 12 13.41 17.59 19 19 17.59 13.41 12z",
    send: "M2.01 21 23 12 2.01 3 2 10l15 2-15 2z",
    person:
      "M12 12c2.21 0 4-1.79 4-4s-1.79-4-4-4-4 1.79-4 4 1.79 4 4 4zm0 2c-2.67 0-8 1.34-8 4v2h16v-2c0-2.66-5.33-4-8-4z",
    up:
      "M1 21h4V9H1v12zm22-11c0-1.1-.9-2-2-2h-6.31l.95-4.57.03-.32c0-.41-.17-.79-.44-1.06L14.17 1 " +
      "7.59 7.59C7.22 7.95 7 8.45 7 9v10c0 1.1.9 2 2 2h9c.83 0 1.54-.5 1.84-1.22l3.02-7.05c.09-.23" +
      ".14-.47.14-.73v-2z",
    down:
      "M15 3H6c-.83 0-1.54.5-1.84 1.22l-3.02 7.05c-.09.23-.14.47-.14.73v2c0 1.1.9 2 2 2h6.31l-.95 " +
      "4.57-.03.32c0 .41.17.79.44 1.06L9.83 23l6.59-6.59c.36-.36.58-.86.58-1.41V5c0-1.1-.9-2-2-2zm4 " +
      "0v12h4V3h-4z",
  };

  const STYLE = `
    :host { all: initial !important; }
    * { box-sizing: border-box; }
    [hidden] { display: none !important; }
    .widget {
      --accent: #0f766e; --accent-dark: #115e59; --ink: #1f2937; --muted: #4b5563; --line: #d1d5db;
      font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
      color: var(--ink); letter-spacing: normal; text-align: left; direction: ltr;
    }
    button, textarea { font: inherit; color: inherit; margin: 0; }
    button { cursor: pointer; }
    :focus { outline: none; }
    :focus-visible { outline: 3px solid #1d4ed8; outline-offset: 2px; }
    .sr-only {
      position: absolute; width: 1px; height: 1px; padding: 0; margin: -1px; overflow: hidden;
      clip: rect(0 0 0 0); white-space: nowrap; border: 0;
    }
    svg { width: 22px; height: 22px; fill: currentColor; display: block; }
    .launcher {
      position: fixed; right: 20px; bottom: 20px; z-index: 2147483000;
      display: flex; align-items: center; justify-content: center;
      width: 58px; height: 58px; border-radius: 50%; border: 0; padding: 0;
      background: var(--accent); color: #fff; box-shadow: 0 6px 20px rgba(0,0,0,.25);
    }
    .launcher:hover { background: var(--accent-dark); }
    .launcher svg { width: 28px; height: 28px; }
    .launcher .when-open, .widget.open .launcher .when-closed { display: none; }
    .widget.open .launcher .when-open { display: block; }
    .panel {
      position: fixed; right: 20px; bottom: 90px; z-index: 2147483000;
      display: flex; flex-direction: column;
      width: 370px; height: min(600px, calc(100vh - 110px));
      background: #fff; border: 1px solid var(--line); border-radius: 14px; overflow: hidden;
      box-shadow: 0 12px 40px rgba(0,0,0,.22);
    }
    .head {
      display: flex; align-items: center; gap: 8px; padding: 12px 12px 12px 16px;
      background: var(--accent); color: #fff;
    }
    .title { flex: 1; margin: 0; font-size: 16px; font-weight: 600; line-height: 1.3; }
    .icon-button {
      display: inline-flex; align-items: center; justify-content: center;
      width: 36px; height: 36px; border: 0; border-radius: 8px; background: transparent; color: inherit;
    }
    .icon-button:hover { background: rgba(255,255,255,.15); }
    .log { flex: 1; overflow-y: auto; padding: 14px; display: flex; flex-direction: column; gap: 10px; }
    .msg { max-width: 85%; display: flex; flex-direction: column; gap: 6px; }
    .msg-user { align-self: flex-end; }
    .msg-assistant, .msg-staff { align-self: flex-start; }
    .bubble {
      margin: 0; padding: 9px 12px; border-radius: 14px; white-space: pre-wrap; overflow-wrap: anywhere;
      background: #f3f4f6; color: var(--ink);
    }
    .msg-user .bubble { background: var(--accent); color: #fff; border-bottom-right-radius: 4px; }
    .msg-assistant .bubble { border-bottom-left-radius: 4px; }
    .msg-staff .bubble { background: #fef3c7; border-bottom-left-radius: 4px; }
    .msg-failed .bubble { background: #e5e7eb; color: var(--muted); }
    .note { font-size: 12px; color: var(--muted); }
    .msg-user .note { text-align: right; }
    .sources { font-size: 13px; color: var(--muted); }
    .sources ol { margin: 2px 0 0; padding: 0; list-style: none; }
    .sources a { color: #1d4ed8; text-decoration: underline; }
    .rate { display: flex; align-items: center; gap: 4px; }
    .rate button {
      display: inline-flex; align-items: center; justify-content: center;
      width: 32px; height: 32px; border: 1px solid var(--line); border-radius: 8px;
      background: #fff; color: var(--muted); padding: 0;
    }
    .rate button svg { width: 16px; height: 16px; }
    .rate button[aria-pressed="true"] { background: var(--accent); border-color: var(--accent); color: #fff; }
    .typing .bubble { display: inline-flex; gap: 4px; align-items: center; padding: 12px 14px; }
    .dot { width: 7px; height: 7px; border-radius: 50%; background: var(--muted); animation: blink 1.2s infinite; }
    .dot:nth-child(2) { animation-delay: .2s; }
    .dot:nth-child(3) { animation-delay: .4s; }
    @keyframes blink { 0%, 80%, 100% { opacity: .25; } 40% { opacity: 1; } }
    .notice { margin: 0; padding: 0 14px; font-size: 13px; color: #b91c1c; }
    .notice:empty { display: none; }
    .notice.info { color: var(--muted); }
    .tools { padding: 6px 14px 0; display: flex; }
    .handoff {
      display: inline-flex; align-items: center; gap: 6px; padding: 6px 10px; min-height: 36px;
      border: 1px solid var(--accent); border-radius: 999px; background: #fff; color: var(--accent-dark);
      font-size: 13px; font-weight: 600;
    }
    .handoff svg { width: 16px; height: 16px; }
    .composer { display: flex; align-items: flex-end; gap: 8px; padding: 10px 14px 14px; }
    textarea {
      flex: 1; resize: none; min-height: 42px; max-height: 120px; padding: 10px 12px;
      border: 1px solid #9ca3af; border-radius: 10px; background: #fff; font-size: 16px; line-height: 1.3;
    }
    textarea::placeholder { color: #6b7280; opacity: 1; }
    textarea:disabled { background: #f3f4f6; }
    .send {
      display: inline-flex; align-items: center; justify-content: center; flex: none;
      width: 42px; height: 42px; border: 0; border-radius: 10px; background: var(--accent); color: #fff;
    }
    .send:disabled { background: #9ca3af; cursor: default; }
    @media (max-width: 480px) {
      .panel { inset: 0; width: 100%; height: 100%; border: 0; border-radius: 0; }
      .widget.open .launcher { display: none; }
      .msg { max-width: 92%; }
    }
    @media (prefers-reduced-motion: reduce) { .dot { animation: none; opacity: .6; } }
  `;

  // Static markup only: every text below is filled in with textContent.
  const MARKUP = `
    <div class="widget">
      <button type="button" class="launcher" aria-haspopup="dialog" aria-expanded="false" aria-controls="panel">
        ${icon("chat", "when-closed")}${icon("close", "when-open")}
      </button>
      <section class="panel" id="panel" role="dialog" aria-labelledby="title" hidden>
        <header class="head">
          <h2 class="title" id="title"></h2>
          <button type="button" class="icon-button close">${icon("close")}</button>
        </header>
        <div class="log" role="log" aria-live="polite" aria-relevant="additions text"></div>
        <p class="notice" role="status" aria-live="polite"></p>
        <div class="tools"><button type="button" class="handoff">${icon("person")}<span></span></button></div>
        <form class="composer" novalidate>
          <label class="sr-only" for="input"></label>
          <textarea id="input" rows="1" autocomplete="off"></textarea>
          <button type="submit" class="send">${icon("send")}</button>
        </form>
      </section>
    </div>`;

  function icon(name, className = "") {
    return `<svg class="${className}" viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="${ICONS[name]}"/></svg>`;
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  let maxChars = 4000;
  let configFailure = null;
  let historyLoaded = false;
  let busy = false;
  let status = "bot";
  let pollTimer = null;
  const shown = new Set(); // ids of stored messages already on screen

  function mount() {
    const host = document.createElement("div");
    host.setAttribute("data-chat-widget", key);
    const root = host.attachShadow({ mode: "open" });
    const style = document.createElement("style");
    style.textContent = STYLE;
    root.appendChild(style);
    const template = document.createElement("template");
    template.innerHTML = MARKUP;
    root.appendChild(template.content);
    document.body.appendChild(host);

    const ui = {
      root,
      widget: root.querySelector(".widget"),
      launcher: root.querySelector(".launcher"),
      panel: root.querySelector(".panel"),
      title: root.querySelector(".title"),
      close: root.querySelector(".close"),
      log: root.querySelector(".log"),
      notice: root.querySelector(".notice"),
      handoff: root.querySelector(".handoff"),
      form: root.querySelector(".composer"),
      input: root.querySelector("textarea"),
      send: root.querySelector(".send"),
    };
    ui.launcher.setAttribute("aria-label", T.open);
    ui.title.textContent = T.title;
    ui.close.setAttribute("aria-label", T.close);
    ui.handoff.querySelector("span").textContent = T.handoff;
    root.querySelector("label").textContent = T.input;
    ui.input.placeholder = T.placeholder;
    ui.send.setAttribute("aria-label", T.send);
    wire(ui);
    loadConfig(ui);
  }

  function wire(ui) {
    ui.launcher.addEventListener("click", () => (ui.panel.hidden ? open(ui) : close(ui)));
    ui.close.addEventListener("click", () => close(ui));
    ui.widget.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !ui.panel.hidden) {
        event.preventDefault();
        close(ui);
      }
    });
    ui.input.addEventListener("keydown", (event) => {
      // isComposing: Enter also confirms a word in Vietnamese and other input methods.
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
        event.preventDefault();
        send(ui);
      }
    });
    ui.input.addEventListener("input", () => {
      ui.input.style.height = "auto";
      ui.input.style.height = `${Math.min(ui.input.scrollHeight + 2, 120)}px`;
    });
    ui.form.addEventListener("submit", (event) => {
      event.preventDefault();
      send(ui);
    });
    ui.handoff.addEventListener("click", () => askForPerson(ui));
  }

  function open(ui) {
    ui.panel.hidden = false;
    ui.widget.classList.add("open");
    ui.launcher.setAttribute("aria-expanded", "true");
    ui.launcher.setAttribute("aria-label", T.close);
    remember(true);
    (ui.input.disabled ? ui.close : ui.input).focus();
    if (!configFailure && !historyLoaded) loadHistory(ui);
    schedulePoll(ui);
  }

  function close(ui) {
    ui.panel.hidden = true;
    ui.widget.classList.remove("open");
    ui.launcher.setAttribute("aria-expanded", "false");
    ui.launcher.setAttribute("aria-label", T.open);
    remember(false);
    clearTimeout(pollTimer);
    ui.launcher.focus();
  }

  // The panel stays open while the shopper moves from page to page of the shop.
  function remember(isOpen) {
    try {
      if (isOpen) sessionStorage.setItem(`chat-widget:${key}:open`, "1");
      else sessionStorage.removeItem(`chat-widget:${key}:open`);
    } catch (blocked) {
      // storage off: the panel starts closed on the next page
    }
  }

  function wasOpen() {
    try {
      return sessionStorage.getItem(`chat-widget:${key}:open`) === "1";
    } catch (blocked) {
      return false;
    }
  }

  function say(ui, text, kind) {
    ui.notice.textContent = text || "";
    ui.notice.className = kind === "info" ? "notice info" : "notice";
  }

  function disable(ui, failure) {
    configFailure = failure;
    ui.input.disabled = true;
    ui.send.disabled = true;
    ui.handoff.hidden = true;
    say(ui, explain(failure));
  }

  async function loadConfig(ui) {
    try {
      // A plain GET without custom headers: no preflight, so a refusal is readable.
      const response = await call(`/config?lang=${LANG}`, { identity: false });
      const config = await response.json();
      maxChars = config.max_message_chars || maxChars;
      ui.input.maxLength = maxChars;
      ui.title.textContent = config.name || T.title;
      if (config.greeting) addMessage(ui, { role: "assistant", text: config.greeting });
    } catch (failure) {
      disable(ui, failure);
    }
    if (wasOpen()) open(ui);
  }

  async function loadHistory(ui) {
    historyLoaded = true;
    try {
      const response = await call("/conversation");
      showConversation(ui, await response.json());
    } catch (failure) {
      if (["invalid_identity", "identity_not_enabled", "invalid_user_id"].includes(failure.code)) {
        disable(ui, failure);
      } else {
        historyLoaded = false; // try again on the next open
        say(ui, explain(failure));
      }
    }
  }

  function showConversation(ui, data) {
    for (const message of data.messages || []) {
      if (!shown.has(message.id)) addMessage(ui, message);
    }
    setStatus(ui, data.conversation ? data.conversation.status : "bot");
  }

  function setStatus(ui, value) {
    status = value;
    const withPerson = status === "waiting_for_human" || status === "human";
    ui.handoff.hidden = withPerson || Boolean(configFailure);
    if (withPerson) say(ui, T.withPerson, "info");
    else if (ui.notice.textContent === T.withPerson) say(ui, "");
    schedulePoll(ui);
  }

  function schedulePoll(ui) {
    clearTimeout(pollTimer);
    const withPerson = status === "waiting_for_human" || status === "human";
    if (!withPerson || ui.panel.hidden || configFailure) return;
    pollTimer = setTimeout(async () => {
      try {
        const response = await call("/conversation");
        showConversation(ui, await response.json());
      } catch (failure) {
        schedulePoll(ui);
      }
    }, POLL_MS);
  }

  function addMessage(ui, message) {
    const role = message.role === "user" || message.role === "staff" ? message.role : "assistant";
    const wrapper = element("div", `msg msg-${role}`);
    const bubble = element("p", "bubble");
    bubble.appendChild(element("span", "sr-only", `${T[role === "assistant" ? "bot" : role]} `));
    const text = element("span", "text", message.text || "");
    bubble.appendChild(text);
    wrapper.appendChild(bubble);
    ui.log.appendChild(wrapper);
    const entry = { wrapper, text };
    if (message.id) finish(ui, entry, message);
    scrollDown(ui);
    return entry;
  }

  // A stored message: its final text, its sources and, for the bot's answers, thumbs up/down.
  function finish(ui, entry, message) {
    shown.add(message.id);
    entry.text.textContent = message.text;
    if (message.role !== "assistant") return;
    const citations = (message.citations || []).filter((citation) => citation && citation.title);
    if (citations.length) {
      const sources = element("div", "sources");
      sources.appendChild(element("span", "", `${T.sources}:`));
      const list = element("ol");
      for (const citation of citations) {
        const item = element("li");
        const label = `[${citation.number}] ${citation.title}`;
        if (isWebAddress(citation.url)) {
          const link = element("a", "", label);
          link.href = citation.url;
          link.target = "_blank";
          link.rel = "noopener noreferrer";
          item.appendChild(link);
        } else {
          item.appendChild(element("span", "", label));
        }
        list.appendChild(item);
      }
      sources.appendChild(list);
      entry.wrapper.appendChild(sources);
    }
    if (message.outcome !== "handoff") entry.wrapper.appendChild(ratingButtons(ui, message));
  }

  function isWebAddress(url) {
    try {
      const protocol = new URL(url).protocol;
      return protocol === "https:" || protocol === "http:";
    } catch (invalid) {
      return false;
    }
  }

  function ratingButtons(ui, message) {
    const group = element("div", "rate");
    group.setAttribute("role", "group");
    group.setAttribute("aria-label", T.rate);
    const buttons = {};
    for (const value of ["up", "down"]) {
      const button = element("button", value);
      button.type = "button";
      button.innerHTML = icon(value); // static icon markup
      button.setAttribute("aria-label", T[value]);
      button.title = T[value];
      button.setAttribute("aria-pressed", String(message.feedback === value));
      button.addEventListener("click", () => rate(ui, message.id, value, buttons));
      buttons[value] = button;
      group.appendChild(button);
    }
    return group;
  }

  async function rate(ui, messageId, value, buttons) {
    if (buttons[value].getAttribute("aria-pressed") === "true") return;
    try {
      const response = await call(`/messages/${messageId}/feedback`, {
        method: "POST",
        body: { feedback: value },
      });
      const stored = (await response.json()).message;
      for (const [name, button] of Object.entries(buttons)) {
        button.setAttribute("aria-pressed", String(stored.feedback === name));
      }
      say(ui, T.thanks, "info");
    } catch (failure) {
      say(ui, explain(failure));
    }
  }

  function showTyping(ui) {
    const wrapper = element("div", "msg msg-assistant typing");
    const bubble = element("p", "bubble");
    bubble.appendChild(element("span", "sr-only", T.typing));
    for (let i = 0; i < 3; i += 1) bubble.appendChild(element("span", "dot"));
    wrapper.appendChild(bubble);
    ui.log.appendChild(wrapper);
    scrollDown(ui);
    return wrapper;
  }

  function scrollDown(ui) {
    ui.log.scrollTop = ui.log.scrollHeight;
  }

  async function send(ui) {
    if (busy || configFailure) return;
    const text = ui.input.value.trim();
    if (!text) {
      say(ui, T.empty);
      return;
    }
    if (text.length > maxChars) {
      say(ui, T.tooLong(maxChars));
      return;
    }
    busy = true;
    ui.send.disabled = true;
    say(ui, status === "bot" ? "" : T.withPerson, "info");
    ui.input.value = "";
    ui.input.style.height = "";
    const question = addMessage(ui, { role: "user", text });
    const typing = showTyping(ui);
    let answer = null;
    let stored = false;
    try {
      const response = await call("/messages", { method: "POST", body: { text, message_id: newId() } });
      stored = true; // the server keeps the question from here on, whatever happens to the answer
      await readEvents(response, (name, data) => {
        if (name === "delta") {
          if (!answer) {
            typing.remove();
            ui.log.setAttribute("aria-busy", "true"); // read out once, when complete
            answer = addMessage(ui, { role: "assistant", text: "" });
          }
          answer.text.textContent += data.text;
          scrollDown(ui);
        } else if (name === "done") {
          typing.remove();
          ui.log.removeAttribute("aria-busy");
          if (data.question_id) shown.add(data.question_id);
          if (data.message) {
            if (!answer) answer = addMessage(ui, { role: "assistant", text: "" });
            finish(ui, answer, data.message);
            scrollDown(ui);
          }
          setStatus(ui, data.conversation.status);
        } else if (name === "error") {
          throw new Failure(data.error.code, data.error.message);
        }
      });
    } catch (failure) {
      typing.remove();
      ui.log.removeAttribute("aria-busy");
      const problem = failure instanceof Failure ? failure : new Failure("failed", String(failure));
      if (!stored) {
        // Refused before it was stored: keep what was typed so nothing is lost.
        question.wrapper.classList.add("msg-failed");
        question.wrapper.appendChild(element("span", "note", T.notSent));
        if (!ui.input.value) ui.input.value = text;
      }
      say(ui, explain(problem));
    } finally {
      busy = false;
      ui.send.disabled = Boolean(configFailure);
      if (!ui.panel.hidden && !configFailure) ui.input.focus();
    }
  }

  async function askForPerson(ui) {
    if (ui.handoff.disabled) return;
    ui.handoff.disabled = true;
    try {
      const response = await call("/handoff", { method: "POST", body: { language: LANG } });
      const data = await response.json();
      if (data.message && !shown.has(data.message.id)) addMessage(ui, data.message);
      setStatus(ui, data.conversation.status);
    } catch (failure) {
      say(ui, explain(failure));
    } finally {
      ui.handoff.disabled = false;
    }
  }

  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount, { once: true });
})();
