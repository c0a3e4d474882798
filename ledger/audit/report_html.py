"""The audit report as one self-contained HTML page a person reads.

The page is ``templates/report.html`` (Jinja2, autoescaped) with its styles inline and its
charts drawn by matplotlib as SVG inlined in the page: no script, no font or stylesheet to
fetch, so the file opens offline and can be archived as it is. Each chart has a title and a
text description for screen readers, and its figures are also in a table beside it.

Example:
    >>> html = render_html(build_report(session, period=period, company_id=1, log_id=1, now=now))
    >>> Path("report.html").write_text(html)
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from threading import Lock
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from ledger.audit.replay import FindingKind
from ledger.audit.report import AuditStatus, Report, channels_of

# Okabe-Ito: told apart by people with the common colour-vision deficiencies.
CHANNEL_COLOURS = {
    "call": "#0072B2",
    "sms": "#E69F00",
    "email": "#009E73",
    "messaging": "#CC79A7",
}
REFUSAL_COLOUR = "#D55E00"
TEXT_COLOUR = "#1f2328"
CHANNEL_LABELS = {"call": "Call", "sms": "SMS", "email": "E-mail", "messaging": "Messaging"}
_DRAWING = Lock()
FINDING_LABELS = {
    FindingKind.VIOLATION: "broke a rule: allowed, the chain says refused",
    FindingKind.UNKNOWN_BLOCK: "broke a rule: allowed on a block the chain does not have",
    FindingKind.WRONGLY_REFUSED: "refused, the chain says allowed",
    FindingKind.MISMATCH: "same answer, other reasons or grant than the chain gives",
}


@dataclass(frozen=True, slots=True)
class Summary:
    """One line of the report's summary: a status people read first, and what it means."""

    tone: str  # ok, bad, unknown: the style, always with words (never colour alone)
    label: str
    text: str


def render_html(report: Report) -> str:
    """The report as one HTML document (UTF-8 text), charts inlined.

    Args:
        report: the data from ``build_report``.

    Returns:
        The page.
    """
    template = _environment().get_template("report.html")
    return template.render(
        report=report,
        title=title_of(report),
        summary=summarise(report),
        channels=channels_of(report.days),
        day_table=_day_table(report),
        contacts_chart=_charted(_contacts_chart, report, "contacts"),
        refusals_chart=_charted(_refusals_chart, report, "refusals"),
        AuditStatus=AuditStatus,
        finding_labels=FINDING_LABELS,
    )


def title_of(report: Report) -> str:
    """The page's title: whose contacts, and over which days."""
    days = report.period.days()
    who = (
        "all companies"
        if report.company_id is None
        else f"{report.company_name or 'unnamed company'} (company {report.company_id})"
    )
    return f"Usage audit: {who}, {_day(days[0])} to {_day(days[-1])}"


def summarise(report: Report) -> list[Summary]:
    """The findings in plain words, most serious first: violations, the log, the anchors."""
    lines = [_violations_line(report), _verification_line(report), _anchoring_line(report)]
    totals = report.totals
    lines.append(
        Summary(
            "info",
            "Decisions",
            f"{totals.entries:,} decisions recorded in the period: {totals.allowed:,} contacts "
            f"allowed, {totals.refused:,} refused.",
        )
    )
    return lines


def _violations_line(report: Report) -> Summary:
    found = report.violations
    if found.status is AuditStatus.NOT_RUN:
        return Summary(
            "unknown",
            "Violations: not checked",
            "The replay of decisions from the chain was not run for this report.",
        )
    broke = sum(1 for v in found.items if v.broke_a_rule)
    wrongly_refused = sum(1 for v in found.items if v.kind is FindingKind.WRONGLY_REFUSED)
    other = len(found.items) - broke - wrongly_refused
    if not found.items:
        replayed = (
            f" ({found.entries_replayed:,} decisions replayed)" if found.entries_replayed else ""
        )
        return Summary("ok", "No violations found", f"Every recorded decision holds{replayed}.")
    parts = []
    if broke:
        parts.append(f"{broke:,} {_plural(broke, 'contact')} broke a consent rule")
    if wrongly_refused:
        parts.append(
            f"{wrongly_refused:,} {_plural(wrongly_refused, 'refusal')} should have been allowed"
        )
    if other:
        parts.append(
            f"{other:,} {_plural(other, 'decision')} recorded other reasons than the chain gives"
        )
    if not (broke or wrongly_refused):
        return Summary("unknown", "Decisions disagree", "; ".join(parts) + ". See the list below.")
    return Summary("bad", "Violations found", "; ".join(parts) + ". See the list below.")


def _verification_line(report: Report) -> Summary:
    found = report.verification
    if found.status is AuditStatus.NOT_RUN:
        return Summary(
            "unknown",
            "Log integrity: not checked",
            "The usage log was not re-hashed against its anchors for this report.",
        )
    if found.status is AuditStatus.FAILED:
        where = f" at entry #{found.first_bad_seq:,}" if found.first_bad_seq is not None else ""
        return Summary(
            "bad",
            "Log integrity: FAILED",
            f"The usage log does not match its hashes or anchors{where}. {found.detail}".strip(),
        )
    checked = f"{found.entries_checked:,} entries" if found.entries_checked is not None else "All"
    return Summary(
        "ok",
        "Log integrity: verified",
        f"{checked} match their hash chain and the anchored Merkle roots"
        + (f" ({found.detail})." if found.detail else "."),
    )


def _anchoring_line(report: Report) -> Summary:
    a = report.anchoring
    if a.log_size == 0:
        return Summary("info", "Anchoring", "The usage log is empty: nothing to anchor yet.")
    if a.anchored_size == 0:
        return Summary(
            "bad",
            "Anchoring: never anchored",
            f"None of the log's {a.log_size:,} entries is covered by an anchor on chain.",
        )
    if a.unanchored == 0:
        return Summary(
            "ok",
            "Anchoring: up to date",
            f"All {a.log_size:,} entries are covered by the anchor of {_when(a.anchored_at)}.",
        )
    waited = f", the oldest for {duration(a.lag_seconds)}" if a.lag_seconds is not None else ""
    return Summary(
        "info",
        "Anchoring: behind",
        f"Anchored up to entry #{a.anchored_size:,} of {a.log_size:,} "
        f"({a.unanchored:,} waiting{waited}).",
    )


def duration(seconds: int | None) -> str:
    """A span of time in the largest units that say it (``2 h 5 min``)."""
    if seconds is None:
        return "n/a"
    if seconds < 60:
        return f"{seconds} s"
    minutes, hours, days = seconds // 60 % 60, seconds // 3600 % 24, seconds // 86400
    parts = [(days, "d"), (hours, "h"), (minutes, "min")]
    shown = [f"{n} {unit}" for n, unit in parts if n][:2]
    return " ".join(shown)


def channel_label(channel: str) -> str:
    """How a person writes a channel's name (``sms`` is ``SMS``)."""
    return CHANNEL_LABELS.get(channel, channel)


def _plural(n: int, word: str) -> str:
    return word if n == 1 else word + "s"


def _day(d: date) -> str:
    return d.strftime("%-d %B %Y")


def _when(at: int | None) -> str:
    if at is None:
        return "never"
    return datetime.fromtimestamp(at, UTC).strftime("%-d %B %Y, %H:%M UTC")


def _day_table(report: Report) -> list[tuple[date, dict[str, int], int]]:
    """Rows of (day, allowed per channel, refused): only days with a decision."""
    rows: dict[date, tuple[dict[str, int], list[int]]] = {}
    for cell in report.days:
        allowed, refused = rows.setdefault(cell.day, ({}, [0]))
        allowed[cell.channel] = allowed.get(cell.channel, 0) + cell.allowed
        refused[0] += cell.refused
    return [(d, allowed, refused[0]) for d, (allowed, refused) in sorted(rows.items())]


# ----- charts -----


@dataclass(frozen=True, slots=True)
class Chart:
    """An SVG chart ready to inline, with what a screen reader says instead."""

    id: str
    title: str
    description: str
    svg: Markup


def _contacts_chart(report: Report) -> Chart | None:
    """Allowed contacts per day, a stacked bar per channel, and refusals beside them."""
    if not report.days:
        return None
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    days = report.period.days()
    index = {d: i for i, d in enumerate(days)}
    # A channel with only refusals gets no bar of its own: its refusals are in the red bar.
    channels = [
        c for c in channels_of(report.days) if any(d.allowed for d in report.days if d.channel == c)
    ]
    allowed = {c: [0] * len(days) for c in channels}
    refused = [0] * len(days)
    for cell in report.days:
        if cell.channel in allowed:
            allowed[cell.channel][index[cell.day]] += cell.allowed
        refused[index[cell.day]] += cell.refused
    figure, axes = _figure(height=3.6)
    x = [datetime(d.year, d.month, d.day) for d in days]
    width = timedelta(hours=9) if len(days) > 1 else timedelta(hours=6)
    left = [t - width / 2 for t in x]
    right = [t + width / 2 for t in x]
    bottom = [0] * len(days)
    for channel in channels:
        axes.bar(
            left,
            allowed[channel],
            width=width,
            bottom=bottom,
            color=CHANNEL_COLOURS.get(channel, "#999999"),
            label=f"{channel_label(channel)}: allowed",
        )
        bottom = [b + n for b, n in zip(bottom, allowed[channel], strict=True)]
    axes.bar(
        right, refused, width=width, color=REFUSAL_COLOUR, hatch="//", label="Refused (any channel)"
    )
    locator = AutoDateLocator(minticks=3, maxticks=10)  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    axes.set_xlim(x[0] - timedelta(hours=18), x[-1] + timedelta(hours=18))
    axes.set_ylabel("decisions per day")
    axes.set_xlabel("day (UTC)")
    axes.yaxis.get_major_locator().set_params(integer=True)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    total_allowed = sum(sum(v) for v in allowed.values())
    busiest = max(range(len(days)), key=lambda i: sum(allowed[c][i] for c in channels))
    by_channel = ", ".join(f"{channel_label(c)} {sum(allowed[c]):,}" for c in channels)
    description = (
        f"Bar chart over {len(days)} days: {total_allowed:,} contacts allowed "
        f"({by_channel or 'none'}) and {sum(refused):,} refused. "
        f"Busiest day: {_day(days[busiest])}. The table below gives every figure."
    )
    return Chart(
        "contacts",
        "Contacts allowed per day by channel, and refusals",
        description,
        _svg(figure, "contacts"),
    )


def _refusals_chart(report: Report) -> Chart | None:
    """Refusals by reason, most frequent at the top."""
    if not report.refusals:
        return None
    shown = report.refusals[:12]
    figure, axes = _figure(height=0.9 + 0.42 * len(shown))
    codes = [r.code.replace("_", " ") for r in reversed(shown)]
    counts = [r.count for r in reversed(shown)]
    bars = axes.barh(codes, counts, color=REFUSAL_COLOUR, label="refusals")
    axes.bar_label(bars, labels=[f"{n:,}" for n in counts], padding=3, color=TEXT_COLOUR)
    axes.set_xlabel("refusals in the period")
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.set_xlim(0, max(counts) * 1.15)
    axes.legend(loc="lower right", frameon=False)
    description = "Horizontal bar chart of refusals by reason: " + ", ".join(
        f"{r.code.replace('_', ' ')} {r.count:,}" for r in shown
    )
    return Chart("refusals", "Refusals by reason", description, _svg(figure, "refusals"))


def _figure(*, height: float) -> tuple[Any, Any]:
    # The object API, not pyplot: no global figure state, safe in a server's threads.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9.0, height), layout="constrained")
    axes = figure.add_subplot()
    axes.spines[["top", "right"]].set_visible(False)
    axes.grid(axis="y", color="#d0d7de", linewidth=0.6)
    axes.set_axisbelow(True)
    return figure, axes


_SVG_START = re.compile(r"^.*?(?=<svg)", re.DOTALL)
_IDS = re.compile(r'(id="|url\(#|href="#)([^")]+)')


def _charted(draw: Callable[[Report], Chart | None], report: Report, name: str) -> Chart | None:
    """``draw(report)`` under the report's chart style.

    matplotlib's style (rcParams) is global and read both when a chart is drawn and when it is
    saved, so charts are drawn one at a time, even from several threads of a server.
    """
    import matplotlib

    with (
        _DRAWING,
        matplotlib.rc_context(
            {
                "svg.fonttype": "none",  # text stays text: sharp, selectable, searchable
                "svg.hashsalt": name,  # the same report draws the same SVG
                "font.family": "sans-serif",
                "font.size": 10,
                "text.color": TEXT_COLOUR,
                "axes.labelcolor": TEXT_COLOUR,
                "xtick.color": TEXT_COLOUR,
                "ytick.color": TEXT_COLOUR,
                "axes.edgecolor": "#57606a",
                "hatch.color": "white",
            }
        ),
    ):
        return draw(report)


def _svg(figure: Any, name: str) -> Markup:
    """``figure`` as inline SVG: text kept as text, ids unique in the page."""
    out = io.StringIO()
    figure.savefig(out, format="svg", metadata={"Date": None})
    svg = _SVG_START.sub("", out.getvalue(), count=1)
    # Two charts in one page: matplotlib numbers its ids from 1 in each, so prefix them.
    svg = _IDS.sub(lambda m: f"{m.group(1)}{name}-{m.group(2)}", svg)
    # The wrapper in the page is the image a screen reader names; the SVG's parts are not.
    svg = svg.replace("<svg ", '<svg aria-hidden="true" focusable="false" ', 1)
    return Markup(svg)  # matplotlib's own output: it escapes the labels it was given


@cache
def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("ledger.audit", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["when"] = _when
    environment.filters["day"] = _day
    environment.filters["duration"] = duration
    environment.filters["channel"] = channel_label
    environment.filters["number"] = lambda n: "n/a" if n is None else f"{n:,}"
    return environment
