"""Which model tier answers a question: short, simple ones go to the cheaper model.

The rules are the bot's own (editable in the admin): a word limit and a list of
words that always need the stronger model. A follow-up also goes to the strong
model, since resolving it against the history is the harder task.
"""

from dataclasses import dataclass

from chatbot.models import Bot
from knowledge.textnorm import fold

SIMPLE = "simple"
STRONG = "strong"


@dataclass(frozen=True)
class Route:
    tier: str  # SIMPLE | STRONG
    reason: str  # for the admin: why this tier


def route_question(*, bot: Bot, question: str, follow_up: bool) -> Route:
    folded = f" {fold(question)} "
    for keyword in bot.strong_keyword_list():
        if f" {fold(keyword)} " in folded:
            return Route(STRONG, f"mentions “{keyword}”")
    words = len(folded.split())
    if words > bot.simple_max_words:
        return Route(STRONG, f"{words} words (simple: up to {bot.simple_max_words})")
    if follow_up:
        return Route(STRONG, "follow-up to earlier turns")
    return Route(SIMPLE, f"{words} words, no strong-model keyword")
