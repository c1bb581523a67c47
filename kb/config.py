"""One settings object, read from KB_* (and KBQ_*, SLACK_*) environment variables once and passed down.

Every variable is listed in the README's configuration table; tests/test_env_documented.py checks it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

DEFAULT_MODEL = "use+minilm"
DEFAULT_RELEVANCE = "e5"  # indexed beside the retrieval embedders, read only by the confidence model
MAX_QUESTION_CHARS = 2000  # the default question length limit (KB_MAX_QUESTION_CHARS)
WIDGET_TOKEN_TTL = 600  # seconds a widget token lives, and the longest lifetime one may claim
INGEST_LOCK_TIMEOUT = 600.0  # seconds an ingest waits for another to finish (a full rebuild here takes ~40 s)


@dataclass(frozen=True)
class Settings:
    index_dir: Path = Path(".kbq/index")
    corpus_dir: Path = Path("corpus")
    embed_model: str = DEFAULT_MODEL
    relevance_model: str = DEFAULT_RELEVANCE  # "none": no relevance model (kb/knowledge.py)
    api_keys: tuple[str, ...] = ()
    admin_keys: tuple[str, ...] = ()  # open the maintainers' insights pages; never the same as api_keys
    cors_origins: tuple[str, ...] = ()
    rate_limit_per_minute: int = 60
    max_question_chars: int = MAX_QUESTION_CHARS
    max_body_bytes: int = 16_384
    widget_secret: str = ""
    slack_bot_token: str = ""
    slack_signing_secret: str = ""
    slack_app_token: str = ""
    slack_api_url: str = ""
    public_url: str = "http://127.0.0.1:8000"
    reload_interval: float = 2.0
    log_level: str = "warning"
    service_url: str = ""  # `kbq ask` asks this running service instead of a local index
    service_api_key: str = ""  # the API key `kbq ask` sends to service_url
    trusted_proxies: tuple[str, ...] = ()  # peers whose X-Forwarded-For/-Proto are believed (IPs or CIDRs)
    workers: int = 1  # server processes (0 from an unset KB_WORKERS: `kbq serve` runs one per CPU core); more
    # than one keeps rate limits in rate_limit_db
    widget_token_ttl: int = WIDGET_TOKEN_TTL
    public_endpoints: tuple[str, ...] = ()  # "docs", "metrics": open even when API keys are set
    ingest_lock_timeout: float = INGEST_LOCK_TIMEOUT
    store: str = "local"  # where the index lives: "local" files at index_dir, or "milvus" (kb/store.py)
    milvus_uri: str = (
        ""  # KB_STORE=milvus: a Milvus Lite file (default: milvus.db beside index_dir) or a server URL
    )
    milvus_token: str = ""  # KB_STORE=milvus: "user:password" or an API key, when the server asks for one
    milvus_collection: str = "kbq"  # KB_STORE=milvus: the prefix of kbq's collection names

    @property
    def feedback_db(self) -> Path:
        return self.index_dir.parent / "answers.sqlite3"

    @property
    def rate_limit_db(self) -> Path:
        """The rate-limit table the workers of one server share (only used with more than one worker)."""
        return self.index_dir.parent / "ratelimit.sqlite3"

    @property
    def model_cache_dir(self) -> Path:
        """Shared by every index version, so re-indexing keeps the fast-loading model cache."""
        return self.index_dir.parent / "model-cache"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if env is None else env

        def items(name: str) -> tuple[str, ...]:
            return tuple(x.strip() for x in env.get(name, "").split(",") if x.strip())

        settings = cls(
            index_dir=Path(env.get("KB_INDEX_DIR", ".kbq/index")),
            corpus_dir=Path(env.get("KB_CORPUS_DIR", "corpus")),
            embed_model=env.get("KB_EMBED_MODEL", DEFAULT_MODEL) or DEFAULT_MODEL,
            relevance_model=env.get("KB_RELEVANCE_MODEL", DEFAULT_RELEVANCE) or DEFAULT_RELEVANCE,
            api_keys=items("KB_API_KEYS"),
            admin_keys=items("KB_ADMIN_KEYS"),
            cors_origins=items("KB_CORS_ORIGINS"),
            rate_limit_per_minute=int(env.get("KB_RATE_LIMIT", "60") or 60),
            widget_secret=env.get("KB_WIDGET_SECRET", ""),
            slack_bot_token=env.get("SLACK_BOT_TOKEN", ""),
            slack_signing_secret=env.get("SLACK_SIGNING_SECRET", ""),
            slack_app_token=env.get("SLACK_APP_TOKEN", ""),
            slack_api_url=env.get("SLACK_API_URL", ""),
            public_url=env.get("KB_PUBLIC_URL", "http://127.0.0.1:8000"),
            max_body_bytes=int(env.get("KB_MAX_BODY_BYTES", "16384") or 16384),
            reload_interval=float(env.get("KB_RELOAD_INTERVAL", "2.0") or 2.0),
            max_question_chars=int(env.get("KB_MAX_QUESTION_CHARS", "") or MAX_QUESTION_CHARS),
            log_level=env.get("KB_LOG_LEVEL", "") or "warning",
            service_url=env.get("KBQ_URL", ""),
            service_api_key=env.get("KBQ_API_KEY", ""),
            trusted_proxies=items("KB_TRUSTED_PROXIES"),
            workers=max(0, int(env.get("KB_WORKERS", "") or 0)),
            widget_token_ttl=int(env.get("KB_WIDGET_TOKEN_TTL", "") or WIDGET_TOKEN_TTL),
            public_endpoints=items("KB_PUBLIC_ENDPOINTS"),
            ingest_lock_timeout=float(env.get("KB_INGEST_LOCK_TIMEOUT", "") or INGEST_LOCK_TIMEOUT),
            store=_store(env.get("KB_STORE", "") or "local"),
            milvus_uri=env.get("KB_MILVUS_URI", ""),
            milvus_token=env.get("KB_MILVUS_TOKEN", ""),
            milvus_collection=env.get("KB_MILVUS_COLLECTION", "") or "kbq",
        )
        return replace(settings, **overrides)  # type: ignore[arg-type]


def _store(name: str) -> str:
    if name not in ("local", "milvus"):
        raise ValueError(f"KB_STORE is {name!r}; it must be 'local' or 'milvus'")
    return name
