"""`kbq`: a thin command-line adapter over kb/. Exit codes: 0 answered, 3 abstained, 2 usage
error, 1 failure. User errors print one clean line, never a traceback."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, replace
from pathlib import Path

import click

from kb.config import Settings

EXIT_ABSTAINED = 3


class Failure(click.ClickException):
    exit_code = 1


def _settings() -> Settings:
    return Settings.from_env()


def _emit(data: object) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


def _open_kb(settings: Settings, build_if_missing: bool = False, one_shot: bool = False, calibration=None):  # type: ignore[no-untyped-def]
    from kb.knowledge import KnowledgeBase
    from kb.store import IndexUnavailable
    from kb.stores import current_version

    if build_if_missing and current_version(settings) is None:
        where = settings.milvus_uri or "Milvus" if settings.store == "milvus" else settings.index_dir
        click.echo(f"No index at {where} yet: building one from {settings.corpus_dir} first…", err=True)
        _run_ingest(settings, None, rebuild=False, as_json=False, quiet=True)
    try:  # a command that answers once wants the encoders that start soonest (kb.embed.load_embedder)
        return KnowledgeBase(settings, calibration=calibration, fast_start=one_shot)
    except IndexUnavailable as exc:
        raise Failure(str(exc)) from None


def _run_ingest(settings: Settings, path: Path | None, rebuild: bool, as_json: bool, quiet: bool) -> None:
    from tqdm import tqdm

    from kb.fsutil import LockTimeout
    from service.indexing import ingest
    from service.render import report_text

    bar = tqdm(total=0, unit="doc", desc="ingest", file=sys.stderr, disable=quiet or as_json)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    def waiting(who: str) -> None:
        bar.write(
            f"{who}; giving up after {settings.ingest_lock_timeout:g} s (KB_INGEST_LOCK_TIMEOUT)", sys.stderr
        )

    try:
        report, problems = ingest(settings, path, rebuild=rebuild, progress=progress, on_wait=waiting)
    except LockTimeout as exc:
        raise Failure(str(exc)) from None
    finally:
        bar.close()
    if as_json:
        _emit({**asdict(report), "problems": [asdict(p) for p in problems]})
    elif not quiet:
        click.echo(report_text(report, problems))
    if not (report.added or report.changed or report.unchanged) and problems:
        raise Failure(f"nothing could be ingested from {path or settings.corpus_dir}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """kbq: cited answers about AWS moving EC2 from Xen to KVM (C5, Nov 2017)."""


@main.command()
@click.argument("path", required=False, type=click.Path(path_type=Path))
@click.option("--rebuild", is_flag=True, help="Re-embed everything even if nothing changed.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def ingest(path: Path | None, rebuild: bool, as_json: bool) -> None:
    """Build or update the index from a corpus folder (default: KB_CORPUS_DIR or ./corpus)."""
    _run_ingest(_settings(), path, rebuild, as_json, quiet=False)


@main.command()
@click.argument("question", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the answer object as JSON.")
@click.option("--url", default=None, help="Ask a running kbq service instead (default: KBQ_URL).")
@click.option(
    "--lang", type=click.Choice(["en", "zh"]), help="Answer in this language (default: the question's)."
)
@click.option("--source", "kinds", multiple=True, type=click.Choice(["article", "faq", "thread"]))
@click.option("--doc-lang", "langs", multiple=True, type=click.Choice(["en", "zh"]), help="Only cite these.")
def ask(
    question: tuple[str, ...],
    as_json: bool,
    url: str | None,
    lang: str | None,
    kinds: tuple[str, ...],
    langs: tuple[str, ...],
) -> None:
    """Answer QUESTION with cited sentences, or abstain (exit 3)."""
    from kb.answer import InvalidQuestion, check_question
    from service.render import answer_text

    settings, text = _settings(), " ".join(question)
    try:
        check_question(text, settings.max_question_chars)
    except InvalidQuestion as exc:
        raise click.UsageError(str(exc)) from None
    if url or settings.service_url:
        from service.remote import ask_remote

        remote = url or settings.service_url
        data = ask_remote(remote, settings.service_api_key, text, kinds, langs, lang)
    else:
        data = _ask_locally(settings, text, kinds, langs, lang)
    if as_json:
        _emit(data)
    else:
        from kb.types import Answer

        click.echo(answer_text(Answer.from_dict(data)))
    sys.exit(EXIT_ABSTAINED if data["abstained"] else 0)


def _ask_locally(
    settings: Settings, question: str, kinds: tuple[str, ...], langs: tuple[str, ...], lang: str | None
) -> dict:
    """Answer in this process and log the answer like the service does, so feedback can find it."""
    from service.feedback import FeedbackStore, ask_logged

    kb = _open_kb(settings, build_if_missing=True, one_shot=True)
    store = FeedbackStore(settings.feedback_db)
    try:
        return ask_logged(kb, store, question, "cli", kinds, langs, lang).to_dict()
    finally:
        store.close()


@main.command()
@click.argument("query", nargs=-1, required=True)
@click.option("-k", default=8, show_default=True, help="Number of hits.")
@click.option("--explain", is_flag=True, help="Show dense and lexical scores per hit.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--source", "kinds", multiple=True, type=click.Choice(["article", "faq", "thread"]))
@click.option("--doc-lang", "--lang", "langs", multiple=True, type=click.Choice(["en", "zh"]))
def search(
    query: tuple[str, ...],
    k: int,
    explain: bool,
    as_json: bool,
    kinds: tuple[str, ...],
    langs: tuple[str, ...],
) -> None:
    """Show the passages retrieval ranks highest for QUERY."""
    from kb.answer import InvalidQuestion
    from service.render import hits_text
    from service.schemas import hit_dict

    try:
        hits = _open_kb(_settings(), build_if_missing=True, one_shot=True).search(
            " ".join(query), k=k, kinds=kinds, langs=langs
        )
    except InvalidQuestion as exc:
        raise click.UsageError(str(exc)) from None
    if as_json:
        _emit([hit_dict(h) for h in hits])
    else:
        click.echo(hits_text(hits, explain))


@main.command()
@click.option("--json", "as_json", is_flag=True)
def docs(as_json: bool) -> None:
    """List the indexed documents."""
    kb = _open_kb(_settings(), build_if_missing=True)
    rows = [
        {
            "doc_id": d.doc_id,
            "kind": d.kind,
            "lang": d.lang,
            "title": d.title,
            "date": d.date,
            "url": d.url,
            "chunks": kb.chunk_count(d.doc_id),
        }
        for d in kb.documents()
    ]
    if as_json:
        _emit(rows)
        return
    for r in rows:
        click.echo(f"{r['doc_id']:<34} {r['kind']:<8} {r['lang']:<3} {r['chunks']:>4}  {r['title'][:60]}")


@main.command(name="eval")
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--calibrate", is_flag=True, help="Refit the confidence calibration and write kb/calibration.json."
)
@click.option("--record", is_flag=True, help="Record these metrics as the baseline the test suite guards.")
@click.option(
    "--golden",
    type=click.Path(path_type=Path),
    default=None,
    help="Golden set: a JSONL file, or a directory of them.",
)
@click.option(
    "--tune", is_flag=True, help="Re-derive the grid-chosen constants of kb/tuning.py on the tune split."
)
@click.option(
    "--report", type=click.Path(path_type=Path), default=None, help="Also write an HTML report here."
)
def eval_(
    as_json: bool, calibrate: bool, record: bool, golden: Path | None, tune: bool, report: Path | None
) -> None:
    """Run the golden-set evaluation and print metrics per language."""
    from evals.runner import run_cli
    from kb.calibration import Calibration
    from kb.knowledge import KnowledgeBase

    def build(settings: Settings, calibration: Calibration | None = None) -> KnowledgeBase:
        return _open_kb(settings, True, calibration=calibration)  # type: ignore[no-any-return]

    run_cli(
        _settings(),
        golden=golden,
        as_json=as_json,
        calibrate_=calibrate,
        tune=tune,
        report=report,
        record=record,
        build=build,
    )


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Server processes, each answering on a core of its own (default: KB_WORKERS, else one per CPU "
    "core); they share widget tokens and rate limits.",
)
def serve(host: str, port: int, workers: int | None) -> None:
    """Serve the HTTP API, the widget and the Slack endpoints."""
    from service.server import run

    settings = _settings()
    settings = replace(settings, workers=workers or settings.workers or os.cpu_count() or 1)
    kb = _open_kb(settings, build_if_missing=True)  # fails here, clearly, rather than in every worker
    click.echo(f"kbq serving on http://{host}:{port}/ ({_plural(settings.workers, 'worker')})", err=True)
    run(settings, kb, host, port)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@main.command()
@click.option("-n", "limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def feedback(limit: int, as_json: bool) -> None:
    """List recent answers with their votes."""
    from service.feedback import FeedbackStore

    rows = FeedbackStore(_settings().feedback_db).recent(limit)
    if as_json:
        _emit(rows)
        return
    for r in rows:
        votes = f"+{r['up']} -{r['down']}"
        click.echo(
            f"{r['created'][:19]}  {votes:>7}  {r['confidence']:.2f}  {r['client']:<6} {r['question'][:70]}"
        )


@main.command()
@click.option(
    "--days", default=30, show_default=True, type=click.IntRange(1, 3660), help="Last N days (UTC)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON (as /admin/insights.json).")
def insights(days: int, as_json: bool) -> None:
    """For maintainers: questions per day, abstentions, votes, unanswered questions grouped by meaning,
    answers voted down, documents by times cited."""
    from service.insights.export import to_text
    from service.insights.report import insights_for

    settings = _settings()
    result = insights_for(settings, _open_kb(settings, build_if_missing=True), days)
    if as_json:
        _emit(result.to_dict())
    else:
        click.echo(to_text(result))


@main.command()
def mcp() -> None:
    """Serve the MCP tools (ask, search, read_document) over stdio, for a desktop assistant."""
    from service.mcp.stdio import run_stdio

    settings = _settings()
    run_stdio(settings, _open_kb(settings, build_if_missing=True))


if __name__ == "__main__":
    main()
