"""The service's parts, built once per app and read through one accessor, ``app_state``.

``create_app`` builds what costs nothing (settings, metrics, rate limiter, widget tokens, the Slack bot);
the lifespan opens the knowledge base and the answer log. Handlers get the parts through ``service.deps``,
the Slack bot and other adapters through ``app_state(app)``; nothing else reads ``app.state``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Collection
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import Request
from starlette.applications import Starlette

from kb.config import Settings
from kb.store import IndexUnavailable
from kb.types import Answer
from service.feedback import FeedbackStore, ask_logged
from service.metrics import Metrics
from service.ratelimit import RateLimiter
from service.widget.tokens import WidgetTokens

if TYPE_CHECKING:  # FAISS and slack-bolt load when they are used, not when this module is imported
    from kb.knowledge import KnowledgeBase
    from service.slackbot.bot import SlackBot

log = logging.getLogger(__name__)


@dataclass
class AppState:
    settings: Settings
    metrics: Metrics
    limiter: RateLimiter
    tokens: WidgetTokens
    slack: SlackBot | None = None
    _kb: KnowledgeBase | None = None
    _store: FeedbackStore | None = None
    # With a worker per core, each answers one question at a time: requests queue in arrival order instead
    # of time-slicing one core (and the GIL) between them, which slowed every answer in flight at once.
    # One worker lets its threads overlap, as onnxruntime and BLAS release the GIL.
    _one_at_a_time: AbstractContextManager[Any] = field(default_factory=contextlib.nullcontext)

    @classmethod
    def build(cls, settings: Settings, kb: KnowledgeBase | None = None) -> AppState:
        limiter = RateLimiter.from_settings(settings)
        serial = threading.Lock() if settings.workers > 1 else contextlib.nullcontext()
        return cls(
            settings, Metrics(), limiter, WidgetTokens.from_settings(settings), _kb=kb, _one_at_a_time=serial
        )

    def open(self) -> None:
        """Load the index (unless it was given) and open the answer log; raises ``IndexUnavailable``."""
        from kb.knowledge import KnowledgeBase

        self._kb = self._kb or KnowledgeBase.open(self.settings)
        self._store = FeedbackStore(self.settings.feedback_db)
        self.count_index()

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    @property
    def kb(self) -> KnowledgeBase:
        """The knowledge base as loaded; ``knowledge()`` also picks up a re-ingested index."""
        if self._kb is None:
            raise RuntimeError("the app has not started: its lifespan loads the knowledge base")
        return self._kb

    @property
    def store(self) -> FeedbackStore:
        if self._store is None:
            raise RuntimeError("the app has not started: its lifespan opens the answer log")
        return self._store

    def count_index(self) -> None:
        self.metrics.index(*self.kb.counts())

    def knowledge(self) -> KnowledgeBase:
        """The knowledge base, after swapping in a newer index if `kbq ingest` wrote one (a cheap check)."""
        kb = self.kb
        try:
            if kb.reload_if_changed(min_interval=self.settings.reload_interval):
                self.count_index()
        except IndexUnavailable as exc:  # keep serving the index we have
            log.warning("new index not loaded, still serving %s: %s", kb.version, exc)
        return kb

    def answer(
        self,
        question: str,
        client: str,
        kinds: Collection[str] | None = None,
        langs: Collection[str] | None = None,
        lang: str | None = None,
    ) -> Answer:
        """Answer, then log the answer once (for feedback and review) and count it: every surface's way in."""
        with self._one_at_a_time:
            answer = ask_logged(self.knowledge(), self.store, question, client, kinds, langs, lang)
        self.metrics.answered(answer.abstained)
        return answer


def app_state(app: Starlette) -> AppState:
    """The one way to the service's parts, from the app."""
    state: AppState = app.state.kbq
    return state


def get_state(request: Request) -> AppState:
    """The one way to the service's parts, from a request (a FastAPI dependency)."""
    return app_state(request.app)
