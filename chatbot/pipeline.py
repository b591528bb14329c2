"""The answer pipeline: one code path from a customer's message to the bot's reply, for every channel.

    store inbound -> a person on it? -> asked for a person? -> answer cache (exact)
    -> embed the question -> answer cache (semantic) -> retrieval -> relevant enough?
    -> route + prompt -> LLM with retries and fallbacks -> store reply, citations,
    cost -> ledger rows -> cache the answer

Channels adapt input (`Inbound`) and output (`Answer`, or the text deltas of
`answer_stream`); nothing here knows about HTTP or Zalo. After the inbound message
is stored nothing raises: any failure becomes a stored "failed" reply that offers a
person, so a customer never meets an error page.
"""

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import transaction

from billing.services import cost_of, usage_record
from chatbot.answer_cache import CachedAnswer, cache_lookup, cache_store, is_cacheable_question
from chatbot.language import asks_for_human, detect_language, is_greeting
from chatbot.llm import (
    FallbackResult,
    GenerationRequest,
    Source,
    generate_with_fallback,
    is_available,
    stream_with_fallback,
)
from chatbot.llm.fallback import LAST_RESORT
from chatbot.models import Bot
from chatbot.prompt import (
    cited_numbers,
    conversation_messages,
    estimated_tokens,
    sources_from_hits,
    system_prompt,
)
from chatbot.routing import route_question
from conversations.models import Conversation, Message
from conversations.selectors import conversation_history
from conversations.services import conversation_request_handoff, message_add_reply, message_receive
from knowledge.embedding import get_embedder
from knowledge.retrieval import Hit, retrieve
from knowledge.selectors import document_live_versions

logger = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 4000
# A question this short after earlier turns is probably a follow-up ("and on Sunday?"):
# retrieval also gets the previous question, which names the topic.
FOLLOW_UP_MAX_WORDS = 6

HANDOFF_OFFER = {
    "vi": "Bạn có muốn nói chuyện với nhân viên không?",
    "en": "Would you like to talk to a person?",
}
INTERRUPTED_NOTE = {
    "vi": "(Câu trả lời bị gián đoạn. Bạn hỏi lại giúp mình nhé.)",
    "en": "(The answer was cut off. Please ask again.)",
}


class InvalidMessage(ValueError):
    """The message cannot be answered as sent (empty, too long); nothing was stored.

    `code` is stable for API clients: "empty_message" | "message_too_long".
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Inbound:
    bot: Bot
    channel: str  # conversations.models.Channel value
    user_id: str  # the channel's id of the customer
    text: str
    message_id: str = ""  # the channel's id of this message; a repeat is answered once
    language: str = ""  # "vi" | "en" when the channel knows; detected otherwise
    display_name: str = ""


@dataclass
class Answer:
    conversation: Conversation
    question: Message  # the stored inbound message
    reply: Message | None  # None when a person handles the conversation (the bot stays quiet)
    outcome: str  # Message.Outcome value, or "" when reply is None
    sources: list[Hit] = field(default_factory=list)
    trace: dict = field(default_factory=dict)  # route, model, prompt size, timings, cache, attempts


def answer(inbound: Inbound) -> Answer:
    """Answer one message and return the stored reply (blocking)."""
    for item in _run(inbound, stream=False):
        if isinstance(item, Answer):
            return item
    raise AssertionError("the pipeline ended without an answer")


def answer_stream(inbound: Inbound) -> Iterator[str | Answer]:
    """Text deltas as the answer is written, then exactly one Answer (the stored reply).

    Validation happens on the first `next()`; InvalidMessage is raised then, before
    anything is stored or streamed.
    """
    yield from _run(inbound, stream=True)


def validate_text(text: str) -> str:
    stripped = text.strip() if isinstance(text, str) else ""
    if not stripped:
        raise InvalidMessage("empty_message", "The message is empty.")
    if len(stripped) > MAX_MESSAGE_CHARS:
        raise InvalidMessage(
            "message_too_long",
            f"The message is {len(stripped)} characters; the limit is {MAX_MESSAGE_CHARS}.",
        )
    return stripped


class _Clock:
    """Milliseconds per pipeline stage, for the trace and the overhead benchmark."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.stages: dict[str, float] = {}
        self._mark = self.started

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.stages[stage] = round(self.stages.get(stage, 0.0) + (now - self._mark) * 1000, 2)
        self._mark = now

    def total_ms(self) -> int:
        return round((time.perf_counter() - self.started) * 1000)


def _run(inbound: Inbound, *, stream: bool) -> Iterator[str | Answer]:
    text = validate_text(inbound.text)
    bot = inbound.bot
    clock = _Clock()
    if inbound.language in bot.languages:
        language = inbound.language
    else:
        language = detect_language(text, allowed=list(bot.languages), fallback=bot.default_language)
    received = message_receive(
        channel=inbound.channel,
        bot_id=bot.pk,
        external_user_id=inbound.user_id,
        text=text,
        external_message_id=inbound.message_id,
        display_name=inbound.display_name,
        language=language,
    )
    clock.lap("store_inbound")
    turn = _Turn(
        bot=bot,
        conversation=received.conversation,
        question=received.message,
        language=language,
        new_conversation=received.new_conversation,
    )
    if not received.created:
        earlier = received.message.replies.order_by("pk").first()
        if earlier is not None:  # a redelivery of a message already answered
            yield turn.finish(earlier, earlier.outcome or "", trace={"repeat": True})
            return
    try:
        yield from turn.answer(clock, stream=stream)
    except Exception:
        logger.exception("the answer pipeline failed for message %s", received.message.pk)
        if turn.finished is None:
            yield turn.failed(clock)
        else:
            yield turn.finished


@dataclass
class _Turn:
    bot: Bot
    conversation: Conversation
    question: Message
    language: str
    new_conversation: bool = False  # nothing came before this message
    trace: dict = field(default_factory=dict)
    finished: Answer | None = None
    embedding: dict | None = None  # the query embedding's usage, written with the reply
    embedding_cost: Decimal = Decimal(0)

    def answer(self, clock: _Clock, *, stream: bool) -> Iterator[str | Answer]:
        bot, conversation = self.bot, self.conversation
        if conversation.status in (Conversation.Status.WAITING_FOR_HUMAN, Conversation.Status.HUMAN):
            # A person has (or is about to take) this conversation: the bot stays quiet.
            self.finished = Answer(conversation, self.question, None, "", trace={"handled_by": "person"})
            yield self.finished
            return
        if asks_for_human(self.question.text):
            self.conversation = conversation_request_handoff(conversation=conversation)
            clock.lap("handoff")
            yield from self.say(
                bot.says("handoff", self.language), Message.Outcome.HANDOFF, clock, stream=stream
            )
            return
        if is_greeting(self.question.text):
            self.trace["greeting"] = True
            yield from self.say(
                bot.says("greeting", self.language), Message.Outcome.ANSWERED, clock, stream=stream
            )
            return

        history = (
            []
            if self.new_conversation
            else conversation_history(
                conversation=conversation, before=self.question, turns=bot.history_turns
            )
        )
        follow_up = bool(history) and len(self.question.text.split()) <= FOLLOW_UP_MAX_WORDS
        cacheable = bot.cache_enabled and is_cacheable_question(
            question=self.question.text, has_history=bool(history)
        )
        clock.lap("history")
        knowledge_base = bot.knowledge_base
        model_key = knowledge_base.embedding_model

        # Exact matches first, before paying for the query embedding.
        if cacheable and (cached := self.cached(model_key, None, clock)):
            yield from self.serve_cached(cached, clock, stream=stream)
            return

        retrieval_query = self.question.text
        if follow_up:
            previous = next((m.text for m in reversed(history) if m.role == Message.Role.USER), "")
            retrieval_query = f"{previous}\n{self.question.text}".strip()
        embedded = get_embedder(model_key).embed_query(retrieval_query)
        query_vector = embedded.vectors[0]
        clock.lap("embed")
        self.record_embedding(embedded.model, embedded.input_tokens, clock)

        if cacheable and not follow_up and (cached := self.cached(model_key, query_vector, clock)):
            yield from self.serve_cached(cached, clock, stream=stream)
            return

        result = retrieve(
            knowledge_base=knowledge_base, query=retrieval_query, top_k=bot.top_k, query_vector=query_vector
        )
        clock.lap("retrieve")
        hits = result.hits
        best = max((hit.vector_score or 0.0 for hit in hits), default=0.0)
        self.trace["retrieval"] = {
            "hits": len(hits),
            "best_similarity": round(best, 4),
            "min_relevance": bot.relevance_floor(),
            "timings_ms": result.timings_ms,
            "query": retrieval_query if follow_up else "",
        }
        if not hits or best < bot.relevance_floor():
            yield from self.say(
                bot.says("dont_know", self.language), Message.Outcome.DONT_KNOW, clock, stream=stream
            )
            return

        sources = sources_from_hits(hits)
        route = route_question(bot=bot, question=self.question.text, follow_up=follow_up)
        system = system_prompt(bot=bot, sources=sources, language=self.language)
        messages = conversation_messages(history=history, question=self.question.text)
        plan = self.plan(route.tier, system, messages, sources)
        self.trace["route"] = {"tier": route.tier, "reason": route.reason, "plan": [name for name, _ in plan]}
        self.trace["prompt"] = {
            "system_chars": len(system),
            "history_messages": len(history),
            "estimated_tokens": estimated_tokens(system, *(message.text for message in messages)),
        }
        clock.lap("prompt")

        fallback: FallbackResult | None = None
        budget = bot.answer_budget_seconds
        streamed = ""
        if stream:
            for item in stream_with_fallback(plan, budget_seconds=budget):
                if isinstance(item, FallbackResult):
                    fallback = item
                else:
                    streamed += item
                    yield item
        else:
            fallback = generate_with_fallback(plan, budget_seconds=budget)
        clock.lap("generate")
        assert fallback is not None
        answer_ = self.reply_generated(
            fallback, hits, sources, query_vector, model_key, cacheable, clock, streamed=stream
        )
        if stream and answer_.reply is not None and answer_.reply.text.startswith(streamed):
            # What the reply adds to the streamed text (a note, an offer of a person, or all of
            # it when nothing streamed), so the customer sees exactly what was stored.
            rest = answer_.reply.text[len(streamed) :]
            if rest:
                yield rest
        yield answer_

    def cached(
        self, embedding_model: str, query_vector: list[float] | None, clock: _Clock
    ) -> CachedAnswer | None:
        found = cache_lookup(
            bot=self.bot,
            language=self.language,
            question=self.question.text,
            query_vector=query_vector,
            embedding_model=embedding_model,
        )
        clock.lap("cache")
        return found

    def say(self, text: str, outcome: str, clock: _Clock, *, stream: bool) -> Iterator[str | Answer]:
        if stream:
            yield text
        yield self.reply(text, outcome, clock)

    def plan(
        self, tier: str, system: str, messages, sources: list[Source]
    ) -> list[tuple[str, GenerationRequest]]:
        bot = self.bot
        steps = []
        for name in [*bot.provider_order, LAST_RESORT]:
            model = bot.model_for(name, tier)
            if not model or not is_available(name) or any(step[0] == name for step in steps):
                continue
            request = GenerationRequest(
                system=system,
                messages=messages,
                model=model,
                max_output_tokens=bot.max_output_tokens,
                temperature=bot.temperature,
                sources=sources,
                language=self.language,
            )
            steps.append((name, request))
        return steps

    def reply_generated(
        self,
        fallback: FallbackResult,
        hits: list[Hit],
        sources: list[Source],
        query_vector: list[float],
        embedding_model: str,
        cacheable: bool,
        clock: _Clock,
        *,
        streamed: bool,
    ) -> Answer:
        self.trace["attempts"] = [
            {
                "provider": attempt.provider,
                "model": attempt.model,
                "number": attempt.number,
                "outcome": attempt.outcome,
                "latency_ms": attempt.latency_ms,
                "error": f"{attempt.error_class}: {attempt.error}" if attempt.error_class else attempt.error,
            }
            for attempt in fallback.attempts
        ]
        generation = fallback.generation
        if generation is None:  # nothing to quote: the extractive provider had no passage
            return self.reply(self.bot.says("dont_know", self.language), Message.Outcome.DONT_KNOW, clock)

        # A streamed text is stored as the customer saw it; notes are added after it.
        text = generation.text if streamed else generation.text.strip()
        llm_failed = any(
            attempt.provider != LAST_RESORT and attempt.outcome != "ok" for attempt in fallback.attempts
        )
        if fallback.interrupted:
            outcome = Message.Outcome.INTERRUPTED
            text = f"{text}\n\n{INTERRUPTED_NOTE.get(self.language, INTERRUPTED_NOTE['en'])}"
        elif generation.provider == LAST_RESORT:
            outcome = Message.Outcome.EXTRACTIVE
            if llm_failed:  # the LLMs failed: offer a person beside the quoted passages
                text = f"{text}\n\n{HANDOFF_OFFER.get(self.language, HANDOFF_OFFER['en'])}"
        elif fallback.fell_back:
            outcome = Message.Outcome.FALLBACK
        else:
            outcome = Message.Outcome.ANSWERED

        numbers = cited_numbers(text, available=len(sources)) or [1]
        citations = [_citation(number, hits[number - 1]) for number in numbers]
        billed = [attempt for attempt in fallback.attempts if attempt.usage is not None]
        with transaction.atomic():
            costs = [
                usage_record(
                    idempotency_key=f"answer:{self.question.pk}:{index}",
                    kind="generation",
                    provider=attempt.provider,
                    model=attempt.model,
                    input_tokens=attempt.usage.input_tokens,
                    output_tokens=attempt.usage.output_tokens,
                    cached_tokens=attempt.usage.cached_tokens,
                    thinking_tokens=attempt.usage.thinking_tokens,
                    latency_ms=attempt.latency_ms,
                    **self.ledger_ids(),
                ).cost
                for index, attempt in enumerate(billed)
            ]
            usage = generation.usage
            answer_ = self.reply(
                text,
                outcome,
                clock,
                citations=citations,
                provider=generation.provider,
                model=generation.model,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens + usage.thinking_tokens,
                cached_tokens=usage.cached_tokens,
                cost=sum(costs, Decimal(0)) + self.embedding_cost,
                sources=hits,
            )
        if cacheable and outcome in (Message.Outcome.ANSWERED, Message.Outcome.FALLBACK):
            try:
                cache_store(
                    bot=self.bot,
                    language=self.language,
                    question=self.question.text,
                    query_vector=query_vector,
                    embedding_model=embedding_model,
                    answer=text,
                    citations=citations,
                    documents=_documents_used(hits),
                    knowledge_base_version=self.bot.knowledge_base.version,
                    provider=generation.provider,
                    model=generation.model,
                    source_message_id=answer_.reply.pk if answer_.reply else None,
                )
            except Exception:  # a cache that cannot store costs a future LLM call, not this answer
                logger.exception("could not cache the answer to message %s", self.question.pk)
        return answer_

    def serve_cached(self, cached: CachedAnswer, clock: _Clock, *, stream: bool) -> Iterator[str | Answer]:
        self.trace["cache"] = {
            "kind": cached.kind,
            "similarity": round(cached.similarity, 4),
            "entry": cached.entry_id,
        }
        if stream:
            yield cached.answer
        with transaction.atomic():
            answer_ = self.reply(
                cached.answer,
                Message.Outcome.CACHED,
                clock,
                citations=cached.citations,
                provider=cached.provider,
                model=cached.model,
                cache_hit=True,
                cost=self.embedding_cost,
            )
            usage_record(
                idempotency_key=f"answer:{self.question.pk}:cache",
                kind="cache_hit",
                provider=cached.provider or "cache",
                model=cached.model or "cache",
                cache_hit=True,
                latency_ms=clock.total_ms(),
                message_id=answer_.reply.pk if answer_.reply else None,
                **self.ledger_ids(),
            )
        yield answer_

    def record_embedding(self, model: str, input_tokens: int, clock: _Clock) -> None:
        """Cost the query embedding now; its ledger row is written with the reply (one commit)."""
        embedder = get_embedder(self.bot.knowledge_base.embedding_model)
        cost = cost_of(provider=embedder.provider, model=model, input_tokens=input_tokens)
        self.embedding = {"provider": embedder.provider, "model": model, "input_tokens": input_tokens}
        self.embedding_cost = cost or Decimal(0)
        clock.lap("ledger")

    def write_embedding_usage(self, message_id: int) -> None:
        if self.embedding is None:
            return
        usage_record(
            idempotency_key=f"answer:{self.question.pk}:embed",
            kind="embedding",
            knowledge_base_id=self.bot.knowledge_base_id,
            message_id=message_id,
            **self.embedding,
            **self.ledger_ids(),
        )

    def ledger_ids(self) -> dict:
        return {
            "channel": self.conversation.channel,
            "bot_id": self.bot.pk,
            "contact_id": self.conversation.contact_id,
            "conversation_id": self.conversation.pk,
        }

    def reply(
        self,
        text: str,
        outcome: str,
        clock: _Clock,
        *,
        sources: list[Hit] | None = None,
        **fields,
    ) -> Answer:
        """Store the bot's reply and make it this turn's Answer."""
        clock.lap("decide")
        # The clock's own dict: the returned Answer's trace also shows the store_reply lap.
        trace = {**self.trace, "stages_ms": clock.stages}
        # No savepoint: inside a caller's transaction the reply and its ledger rows stand or fall together.
        with transaction.atomic(savepoint=False):
            message = message_add_reply(
                conversation=self.conversation,
                in_reply_to=self.question,
                text=text,
                language=self.language,
                outcome=outcome,
                latency_ms=clock.total_ms(),
                details=trace,
                **fields,
            )
            self.write_embedding_usage(message.pk)
        clock.lap("store_reply")
        self.finished = Answer(self.conversation, self.question, message, outcome, sources or [], trace)
        return self.finished

    def finish(self, message: Message, outcome: str, *, trace: dict) -> Answer:
        self.finished = Answer(self.conversation, self.question, message, outcome, [], trace)
        return self.finished

    def failed(self, clock: _Clock) -> Answer:
        offer = HANDOFF_OFFER.get(self.language, HANDOFF_OFFER["en"])
        text = f"{self.bot.says('dont_know', self.language)}"
        if offer not in text:
            text = f"{text} {offer}"
        try:
            return self.reply(text, Message.Outcome.FAILED, clock)
        except Exception:  # the database itself is failing: answer without a stored reply
            logger.exception("could not store the failure reply to message %s", self.question.pk)
            return Answer(self.conversation, self.question, None, Message.Outcome.FAILED, [], self.trace)


def _citation(number: int, hit: Hit) -> dict:
    return {
        "number": number,
        "document_id": hit.document_id,
        "document_title": hit.document_title,
        "heading": hit.heading,
        "chunk_id": hit.chunk_id,
        "score": round(hit.fused_score, 4),
    }


def _documents_used(hits: list[Hit]) -> dict[int, int]:
    """Every document shown to the model, not only the cited ones: any of them shaped the answer."""
    versions = document_live_versions(document_ids=[hit.document_id for hit in hits])
    return {document_id: version for document_id, version in versions.items() if version is not None}


__all__ = ["Answer", "Inbound", "InvalidMessage", "answer", "answer_stream", "validate_text"]
