"""Model, tool and title text is untrusted: it never runs script, never becomes HTML, and never
makes the browser load anything from another host."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from conversations.models import Conversation
from tests.browser.conftest import directive, last_answer, send

# Each payload, if it ever ran, would set window.__xss or open a dialog.
XSS_CORPUS = [
    "<script>window.__xss = 'script'</script>",
    "<img src=x onerror=\"window.__xss='img'\">",
    "<img src=\"http://evil.example.com/pixel.gif\">",
    "<svg onload=\"window.__xss='svg'\"><circle r=\"10\"/></svg>",
    "<svg><script>alert('svg-script')</script></svg>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert('mxss')>",
    "<iframe srcdoc=\"<script>parent.__xss='iframe'</script>\"></iframe>",
    "<iframe src=\"javascript:alert('iframe-src')\"></iframe>",
    "<object data=\"data:text/html,<script>alert('object')</script>\"></object>",
    "<form action=\"http://evil.example.com/\"><button>Win</button></form>",
    "<style>body { background: url(http://evil.example.com/bg.png) }</style>",
    "<a href=\"javascript:alert('raw-a')\">raw link</a>",
    "<div onmouseover=\"window.__xss='div'\">hover me</div>",
    "[click me](javascript:window.__xss='md-link')",
    "[click me too](JaVaScRiPt:alert('md-link-case'))",
    "[encoded](&#106;avascript:alert('entity'))",
    "[data link](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "<javascript:alert('autolink')>",
    "[ref link][evil]\n\n[evil]: javascript:alert('ref')",
    "![tracking pixel](http://evil.example.com/track.png?user=me)",
    "![inline data](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
    "[titled](https://ok.example.com/ \"x\\\" onmouseover=\\\"alert('title')\")",
    "`<script>alert('in-code')</script>`",
    "```html\n<script>alert('in-fence')</script>\n<img src=x onerror=alert('fence')>\n```",
    "```\" onmouseover=\"alert('info-string')\n<b>fence info</b>\n```",
    "<scr<script>ipt>alert('nested')</scr</script>ipt>",
    "<<img src=x onerror=alert('double')>>",
    "<a href=\"http://evil.example.com/\" ping=\"http://evil.example.com/ping\">ping</a>",
    "<link rel=\"stylesheet\" href=\"http://evil.example.com/x.css\">",
    "<base href=\"http://evil.example.com/\">",
    "<meta http-equiv=\"refresh\" content=\"0;url=javascript:alert('meta')\">",
    "<video src=x onerror=alert('video')></video><audio src=x onerror=alert('audio')>",
]
XSS_REPLY = "Here is everything at once:\n\n" + "\n\n".join(XSS_CORPUS) + "\n\nThe end."

FORBIDDEN = "img, svg, math, iframe, script, style, form, object, embed, link, meta, base, video, audio, input"


def assert_nothing_ran_or_loaded(page) -> None:
    assert page.evaluate("window.__xss") is None
    assert page.watcher.dialogs == []
    assert page.watcher.foreign_requests() == []
    transcript = page.locator("#transcript")
    assert transcript.locator(FORBIDDEN).count() == 0
    assert transcript.locator("[onerror], [onload], [onmouseover], [srcdoc], [style]").count() == 0
    hrefs = transcript.locator("a[href]").evaluate_all("els => els.map(a => a.getAttribute('href'))")
    for href in hrefs:
        assert re.match(r"^(https?:|mailto:)", href), href
    assert page.evaluate("window.__csp") == []
    assert page.watcher.errors == []


def test_the_xss_corpus_never_runs_nor_loads_anything(chat):
    # Streamed 3 characters at a time: every payload is split across chunks.
    send(chat, "Show me some HTML\n" + directive(reply=XSS_REPLY, chunk=3))
    answer = last_answer(chat)
    expect(answer).to_contain_text("The end.", timeout=20000)
    expect(chat.get_by_role("button", name="Send")).to_be_visible()
    # Raw HTML shows as text.
    expect(answer).to_contain_text("<script>window.__xss = 'script'</script>")
    expect(answer).to_contain_text("<iframe srcdoc=")
    # Unsafe links are plain text; the remote image is only a link to it, never loaded.
    expect(answer).to_contain_text("[click me](javascript:window.__xss='md-link')")
    expect(answer).to_contain_text("[data link](data:text/html")
    image = answer.get_by_role("link", name="Image: tracking pixel")
    expect(image).to_have_attribute("href", "http://evil.example.com/track.png?user=me")
    expect(image).to_have_attribute("rel", "noopener noreferrer nofollow")
    # Hovering over everything runs nothing either.
    for el in answer.locator(".md > *").all():
        el.hover()
    # The same text again from the database, after a reload: still inert.
    chat.reload()
    expect(last_answer(chat)).to_contain_text("The end.")
    assert_nothing_ran_or_loaded(chat)
    assert not re.search(r"evil\.example\.com", " ".join(chat.watcher.requests))


def test_tool_reasoning_and_title_text_are_inert_too(chat, django_db_blocker):
    payload = "<img src=x onerror=\"window.__xss='tool'\"><script>window.__xss='tool2'</script>"
    send(chat, directive(
        reasoning=f"thinking {payload}", chunk=5,
        tool_calls=[{"name": "<svg onload=alert(1)>", "arguments": {"q": payload}}],
    ))
    answer = last_answer(chat)
    expect(chat.get_by_role("button", name="Send")).to_be_visible(timeout=10000)
    answer.locator("details.reasoning summary").click()
    card = answer.locator("details.tool-call")
    card.locator("summary").click()
    expect(card.locator(".tool-args")).to_contain_text("<img src=x onerror=")
    expect(card.locator(".tool-name")).to_have_text("<svg onload=alert(1)>")
    # A title is text too (the model writes titles).
    conversation_id = chat.url.rstrip("/").rsplit("/", 1)[1]
    with django_db_blocker.unblock():
        Conversation.objects.filter(pk=conversation_id).update(title=payload)
    chat.reload()
    expect(chat.locator("#conversation-title")).to_have_text(payload)
    expect(chat.locator("#conversation-list .title").first).to_have_text(payload)
    assert chat.locator("#conversation-list, #conversation-title").locator(FORBIDDEN).count() == 0
    assert_nothing_ran_or_loaded(chat)


def test_a_highlighted_code_block_with_a_copy_button(chat):
    chat.context.grant_permissions(["clipboard-read", "clipboard-write"])
    code = "const answer = 42;\nfunction double(x) {\n  return x * 2;\n}"
    send(chat, directive(reply=f"Try this:\n\n```javascript\n{code}\n```\n\nand `inline`.", chunk=7))
    block = last_answer(chat).locator(".code-block")
    expect(block.locator(".code-lang")).to_have_text("javascript")
    expect(block.locator("code.hljs.language-javascript .hljs-keyword").first).to_have_text("const")
    expect(block.locator(".hljs-title.function_")).to_have_text("double")
    expect(block.locator("code")).to_have_text(code + "\n")
    expect(block.get_by_role("button", name="Copy")).to_be_visible()
    copy = block.locator("button.copy-code")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert chat.evaluate("navigator.clipboard.readText()") == code
    expect(copy).to_have_text("Copy", timeout=3000)
    # Inline code is not a block.
    expect(last_answer(chat).locator("p code")).to_have_text("inline")
