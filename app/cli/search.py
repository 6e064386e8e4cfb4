"""``quantdesk search WORDS``: find models on the Hub (GPTQ by default), ranked as asked."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from app.cli.args import Subcommands, gpu_sizes, positive_int

if TYPE_CHECKING:
    from app.catalog.search import ModelHit
    from app.catalog.search_fit import GlanceFit

MAX_LIMIT = 1000
FIT_WORKERS = 4  # repos judged at once with --fit (each reads its branches concurrently too)


def add_parser(commands: Subcommands) -> None:
    """Register ``quantdesk search``."""
    search = commands.add_parser(
        "search",
        help="find models on the Hub by name (GPTQ only unless --all-formats)",
        description="Search the Hugging Face Hub for models whose id contains every word, GPTQ uploads "
        "only unless --all-formats; or list the quantized versions of a base model (--base-model).",
    )
    search.add_argument("words", nargs="*", help="words of the model's name, e.g. llama 70b gptq")
    search.add_argument("--author", help="only this user's or organisation's models, e.g. TheBloke")
    search.add_argument(
        "--sort", choices=["downloads", "likes", "trending", "modified"], default="downloads", help="order"
    )
    search.add_argument("--limit", type=positive_int, default=20, help="how many results (default 20)")
    search.add_argument("--all-formats", action="store_true", help="include non-GPTQ models")
    search.add_argument(
        "--base-model", metavar="ID", help="list the quantized versions of this model, GPTQ first"
    )
    search.add_argument(
        "--fit", action="store_true", help="also read each GPTQ result's branches: smallest need and fit"
    )
    search.add_argument(
        "--gpus", type=gpu_sizes, default=None, metavar="GIB[,GIB...]", help="with --fit: plan for these GPUs"
    )
    search.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    """Print the results (or JSON)."""
    from app.auth import read_token
    from app.catalog.search import HubSearch, SearchQuery, SortKey

    query = SearchQuery(
        text=" ".join(args.words),
        author=args.author,
        sort=SortKey(args.sort),
        gptq_only=not args.all_formats,
        base_model=args.base_model,
        page_size=min(args.limit, 100),
    )
    search = HubSearch(token=read_token())
    page = search.first_page(query)
    hits = list(page.hits)
    while len(hits) < min(args.limit, MAX_LIMIT) and page.cursor is not None and not page.stale:
        page = search.page(query, page.cursor)
        hits.extend(page.hits)
    hits = hits[: args.limit]
    fits = _fits(hits, args.gpus) if args.fit else {}
    if args.json:
        print(json.dumps([_hit_json(h, fits.get(h.repo_id)) for h in hits], indent=2))
    elif hits:
        print(format_results(hits, fits if args.fit else None))
    if not hits:
        scope = "" if args.all_formats else " among GPTQ uploads (add --all-formats for every format)"
        print(f"No models found for {query.describe()}{scope}.", file=sys.stderr)
    if page.stale:
        print(f"note: offline, showing results cached earlier. {page.stale_reason}", file=sys.stderr)
    return 0


def _hit_json(hit: ModelHit, fit: GlanceFit | str | None) -> dict[str, Any]:
    data = hit.to_dict()
    if isinstance(fit, str):
        data["fit"] = {"status": "unknown", "message": fit}
    elif fit is not None:
        data["fit"] = {
            "status": str(fit.status),
            "need_bytes": fit.need_bytes,
            "branch": fit.branch,
            "message": fit.message,
        }
    return data


def _fits(hits: list[ModelHit], gpus: list[float] | None) -> dict[str, GlanceFit | str]:
    """Smallest GPTQ branch's fit per GPTQ result (or the reason it is unknown), read concurrently."""
    from concurrent.futures import ThreadPoolExecutor

    from app.catalog.search_fit import fetch_for_glance, glance_fit
    from app.catalog.vram import CacheType
    from app.errors import QuantDeskError
    from app.hardware import detect_hardware, planned_hardware

    hardware = detect_hardware()
    if gpus:
        hardware = planned_hardware(hardware, gpus)

    def judge(repo_id: str) -> GlanceFit | str:
        try:
            return glance_fit(fetch_for_glance(repo_id), None, CacheType.FP16, hardware)
        except QuantDeskError as exc:
            return exc.user_message

    gptq = [h.repo_id for h in hits if h.is_gptq]
    with ThreadPoolExecutor(max_workers=FIT_WORKERS) as pool:
        return dict(zip(gptq, pool.map(judge, gptq), strict=True))


def format_results(hits: list[ModelHit], fits: dict[str, GlanceFit | str] | None = None) -> str:
    """The results as an aligned plain-text table (with Fit and Needs columns when ``fits`` is given)."""
    from app.catalog.search_fit import FIT_WORDS
    from app.catalog.search_text import format_count, format_day, size_or_parameters
    from app.units import format_size

    headers = ["Model", "Downloads", "Likes", "Updated", "Repo size", "Tags", "Base model"]
    lines = [
        [
            h.repo_id,
            format_count(h.downloads),
            format_count(h.likes),
            format_day(h.last_modified),
            size_or_parameters(h),
            ",".join(h.badges) or "-",
            h.base_model or "-",
        ]
        for h in hits
    ]
    if fits is not None:
        headers += ["Fit", "Needs"]
        for line, hit in zip(lines, hits, strict=True):
            fit = fits.get(hit.repo_id)
            if fit is None or isinstance(fit, str):
                line += ["-", "-"]  # not GPTQ, or its branches could not be read (see --json)
            else:
                need = format_size(fit.need_bytes) if fit.need_bytes is not None else "-"
                line += [FIT_WORDS[fit.status], need]
    widths = [max([len(h)] + [len(line[i]) for line in lines]) for i, h in enumerate(headers)]
    numeric = {1, 2}

    def cell(text: str, i: int) -> str:
        return text.rjust(widths[i]) if i in numeric else text.ljust(widths[i])

    out = ["  ".join(cell(h, i) for i, h in enumerate(headers)).rstrip()]
    out.append("  ".join("-" * w for w in widths))
    out.extend("  ".join(cell(c, i) for i, c in enumerate(line)).rstrip() for line in lines)
    return "\n".join(out)
