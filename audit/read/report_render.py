"""The auditor's report (``audit.read.report.AuditReport``) as self-contained HTML or as PDF.

HTML: one file, no scripts, no outside resources (charts are inline SVG), so it can be mailed
and archived as it is. PDF: ReportLab (pure Python, its charts drawn as vectors). Both show
the same sections in the same order.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from audit.read.report import ActionRow, AuditReport

TITLE = "Warden audit report"
_BLOCK, _REDACT, _FLAG, _OK = "#c0392b", "#e67e22", "#f1c40f", "#5b8def"


def _short(label: str) -> str:
    """A chart label: a day as MM-DD, a long check name cut."""
    if len(label) == 10 and label[4] == "-" and label[7] == "-":
        return label[5:]
    return label if len(label) <= 16 else label[:15] + "…"


def _t(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def integrity_lines(rep: AuditReport) -> tuple[bool, list[str]]:
    """(ok, sentences) for the integrity section, shared by both formats."""
    if rep.integrity is None:
        return False, ["Integrity was not checked for this report."]
    v = rep.integrity.verify
    lines = [
        f"Hash chains: {v.records_checked:,} request records, {v.reviews_checked:,} rulings in "
        f"{v.chains_checked:,} chains verified: " + ("intact." if v.ok else f"{len(v.problems)} problems."),
    ]
    lines += [f"{p.kind.value}: {p.message}" for p in v.problems[:20]]
    if v.erased:
        lines.append(f"{v.erased:,} records had their texts erased; every erasure is a verified chained record.")
    a = rep.integrity.anchors
    if a is None:
        lines.append(
            "No anchors were checked: truncation of a chain's newest records cannot be detected without the "
            "signed chain heads published outside the database."
        )
    else:
        lines.append(
            f"Anchors ({rep.integrity.anchors_source}): {a.anchors_read:,} signed chain heads from {a.sources} "
            f"source{'s' if a.sources != 1 else ''} checked for {a.chains_anchored} chains: "
            + ("all held." if a.ok else "FAILED.")
        )
        lines += [f"{p.kind.value}: {p.message}" for p in a.problems[:20]]
        lines += [f"note: {n}" for n in a.notes[:10]]
    return rep.integrity.ok, lines


# -- HTML -------------------------------------------------------------------------------------


def _bars_svg(labels: Sequence[str], series: Sequence[tuple[str, str, Sequence[int]]], height: int = 180) -> str:
    """Stacked vertical bars: ``series`` is (name, colour, values per label)."""
    n = max(len(labels), 1)
    totals = [sum(s[2][i] for s in series) for i in range(len(labels))]
    top = max([*totals, 1])
    width = max(360, 28 * n + 40)
    bw = (width - 40) / n
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 40}" role="img">']
    for i, label in enumerate(labels):
        y = float(height)
        for name, colour, values in series:
            h = values[i] / top * (height - 10)
            if h > 0:
                x = 30 + i * bw
                parts.append(
                    f'<rect x="{x:.1f}" y="{y - h:.1f}" width="{bw * 0.8:.1f}" height="{h:.1f}" fill="{colour}">'
                    f"<title>{_e(label)}: {values[i]} {_e(name)}</title></rect>"
                )
            y -= h
        if n <= 31:
            parts.append(
                f'<text x="{30 + i * bw + bw * 0.4:.1f}" y="{height + 14}" font-size="9" text-anchor="middle">'
                f"{_e(_short(label))}</text>"
            )
    parts.append(f'<text x="0" y="10" font-size="9">{top}</text><line x1="28" y1="{height}" x2="{width}" ')
    parts.append(f'y2="{height}" stroke="#888"/></svg>')
    legend = " ".join(f'<span style="color:{c}">&#9632;</span> {_e(name)}' for name, c, _ in series)
    return f"<figure>{''.join(parts)}<figcaption>{legend}</figcaption></figure>"


def _action_table(rows: Sequence[ActionRow], what: str) -> str:
    if not rows:
        return f"<p>No {what} in this period.</p>"
    body = "".join(
        f"<tr><td>{_e(r.name)}</td><td>{r.requests:,}</td><td>{r.blocked:,}</td><td>{r.redacted:,}</td>"
        f"<td>{r.flagged:,}</td></tr>"
        for r in rows
    )
    return (
        f"<table><thead><tr><th>{_e(what)}</th><th>requests</th><th>blocked</th><th>redacted</th>"
        f"<th>flagged</th></tr></thead><tbody>{body}</tbody></table>"
    )


POLICY_COLUMNS = ("policy", "version", "requests", "in force", "saved by", "saved at")


def _table(columns: Sequence[str], body: str) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(rep: AuditReport) -> str:
    ok, lines = integrity_lines(rep)
    days = [d.day.isoformat() for d in rep.days]
    volume = _bars_svg(
        days,
        [
            ("blocked", _BLOCK, [d.blocked for d in rep.days]),
            ("redacted", _REDACT, [d.redacted for d in rep.days]),
            ("flagged", _FLAG, [d.flagged for d in rep.days]),
            ("other", _OK, [d.requests - d.blocked - d.redacted - d.flagged for d in rep.days]),
        ],
    )
    checks = rep.by_check[:20]
    check_chart = _bars_svg(
        [c.name for c in checks],
        [
            ("blocked", _BLOCK, [c.blocked for c in checks]),
            ("redacted", _REDACT, [c.redacted for c in checks]),
            ("flagged", _FLAG, [c.flagged for c in checks]),
        ],
    )
    verdicts = ", ".join(f"{k}: {v:,}" for k, v in sorted(rep.by_verdict.items())) or "none"
    rulings = ", ".join(f"{k}: {v:,}" for k, v in sorted(rep.rulings.items())) or "none"
    open_rows = "".join(
        f"<tr><td><code>{_e(o.request_id)}</code></td><td>{_t(o.started_at)}</td><td>{_e(o.tenant)}</td>"
        f"<td>{_e(o.verdict)}</td><td>{'escalated' if o.escalated else 'not reviewed'}</td></tr>"
        for o in rep.open_sample
    )
    policies = "".join(
        f"<tr><td>{_e(p.name)}</td><td><code>{_e(p.version[:19])}</code></td><td>{p.requests:,}</td>"
        f"<td>{_t(p.first_seen)} – {_t(p.last_seen)}</td><td>{_e(p.saved_by or 'not saved from the dashboard')}"
        f"</td><td>{_t(p.saved_at)}</td></tr>"
        for p in rep.policies
    )
    changes = "".join(
        f"<li>{_t(p.saved_at)}: {_e(p.name)} <code>{_e(p.version[:19])}</code> by {_e(p.saved_by)}"
        f"{' – ' + _e(p.note) if p.note else ''}</li>"
        for p in rep.policy_changes
    )
    erasures = "".join(
        f"<li>{_t(x.at)}: {x.records:,} records ({_e(x.scope)} {_e(x.selector)}) by {_e(x.actor)}</li>"
        for x in rep.erasures
    )
    status = "verified" if ok else "NOT verified"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{TITLE}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1100px }}
table {{ border-collapse: collapse; margin: .5em 0 1.5em }} td, th {{ border: 1px solid #ccc; padding: 3px 8px }}
th {{ background: #f3f3f3; text-align: left }} .ok {{ color: #1e8449 }} .bad {{ color: #c0392b }}
figure {{ margin: 0 0 1em }} figcaption {{ font-size: 80% }}
</style></head><body>
<h1>{TITLE}</h1>
<p>Period: <b>{_t(rep.since)}</b> to <b>{_t(rep.until)}</b> (end exclusive). Generated {_t(rep.generated_at)}.</p>
<h2>Integrity: <span class="{"ok" if ok else "bad"}">{status}</span></h2>
<ul>{"".join(f"<li>{_e(line)}</li>" for line in lines)}</ul>
<h2>Volume</h2>
<p>{rep.total:,} requests ({verdicts}).</p>
{volume}
<h2>Blocks and redactions by check</h2>
{check_chart}
{_action_table(rep.by_check, "check")}
<h2>By tenant</h2>
{_action_table(rep.by_tenant, "tenant")}
<h2>Reviewer rulings and open items</h2>
<p>Rulings on these requests: {rulings}. Open items (flagged, redacted or blocked, not confirmed or dismissed):
<b>{rep.open_items:,}</b>{f"; the newest {len(rep.open_sample)}:" if rep.open_sample else "."}</p>
{_table(("request", "started", "tenant", "verdict", "state"), open_rows) if open_rows else ""}
<h2>Policy versions in force</h2>
{_table(POLICY_COLUMNS, policies) if policies else "<p>No requests in this period.</p>"}
<h3>Policy changes in the period</h3>
{f"<ul>{changes}</ul>" if changes else "<p>None saved from the dashboard.</p>"}
<h2>Erasures</h2>
{f"<ul>{erasures}</ul>" if erasures else "<p>None in this period.</p>"}
</body></html>
"""


# -- PDF --------------------------------------------------------------------------------------


def render_pdf(rep: AuditReport, out: Path | BinaryIO) -> None:
    from reportlab.graphics.charts.barcharts import VerticalBarChart
    from reportlab.graphics.shapes import Drawing
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import cm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    styles = getSampleStyleSheet()
    story: list[object] = []

    def para(text: str, style: str = "BodyText") -> None:
        story.append(Paragraph(text, styles[style]))

    def table(header: list[str], rows: list[list[str]]) -> None:
        if not rows:
            return
        t = Table([header, *rows], repeatRows=1, hAlign="LEFT")
        t.setStyle(
            TableStyle(
                [
                    ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eeeeee")),
                    ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
                    ("FONTSIZE", (0, 0), (-1, -1), 8),
                ]
            )
        )
        story.append(t)
        story.append(Spacer(1, 0.3 * cm))

    def chart(labels: list[str], series: list[tuple[str, str, list[int]]]) -> None:
        if not labels:
            return
        d = Drawing(16 * cm, 5.5 * cm)
        c = VerticalBarChart()
        c.x, c.y, c.width, c.height = 1.2 * cm, 1.2 * cm, 14 * cm, 3.8 * cm
        c.data = [values for _, _, values in series]
        c.categoryAxis.categoryNames = [_short(label) for label in labels]
        c.categoryAxis.labels.fontSize = 6
        c.categoryAxis.labels.angle = 30 if len(labels) > 16 else 0
        c.categoryAxis.labels.boxAnchor = "ne" if len(labels) > 16 else "n"
        c.valueAxis.valueMin = 0
        c.valueAxis.labels.fontSize = 7
        c.categoryAxis.style = "stacked"
        for i, (_, colour, _) in enumerate(series):
            c.bars[i].fillColor = colors.HexColor(colour)
        d.add(c)
        story.append(d)
        para(" ".join(f'<font color="{colour}">&#9632;</font> {name}' for name, colour, _ in series))
        story.append(Spacer(1, 0.3 * cm))

    ok, lines = integrity_lines(rep)
    para(TITLE, "Title")
    para(f"Period: <b>{_t(rep.since)}</b> to <b>{_t(rep.until)}</b> (end exclusive). Generated {_t(rep.generated_at)}.")
    para(
        f'Integrity: <font color="{"#1e8449" if ok else "#c0392b"}">{"verified" if ok else "NOT verified"}</font>',
        "Heading2",
    )
    for line in lines:
        para(_e(line))
    para("Volume", "Heading2")
    verdicts = ", ".join(f"{k}: {v:,}" for k, v in sorted(rep.by_verdict.items())) or "none"
    para(f"{rep.total:,} requests ({verdicts}).")
    chart(
        [d.day.isoformat() for d in rep.days],
        [
            ("blocked", _BLOCK, [d.blocked for d in rep.days]),
            ("redacted", _REDACT, [d.redacted for d in rep.days]),
            ("flagged", _FLAG, [d.flagged for d in rep.days]),
            ("other", _OK, [d.requests - d.blocked - d.redacted - d.flagged for d in rep.days]),
        ],
    )
    para("Blocks and redactions by check", "Heading2")
    checks = rep.by_check[:15]
    chart(
        [c.name for c in checks],
        [
            ("blocked", _BLOCK, [c.blocked for c in checks]),
            ("redacted", _REDACT, [c.redacted for c in checks]),
            ("flagged", _FLAG, [c.flagged for c in checks]),
        ],
    )
    header = ["", "requests", "blocked", "redacted", "flagged"]

    def action_rows(rows: Sequence[ActionRow]) -> list[list[str]]:
        return [[r.name, f"{r.requests:,}", f"{r.blocked:,}", f"{r.redacted:,}", f"{r.flagged:,}"] for r in rows]

    table(["check", *header[1:]], action_rows(rep.by_check))
    para("By tenant", "Heading2")
    table(["tenant", *header[1:]], action_rows(rep.by_tenant))
    para("Reviewer rulings and open items", "Heading2")
    rulings = ", ".join(f"{k}: {v:,}" for k, v in sorted(rep.rulings.items())) or "none"
    para(f"Rulings on these requests: {rulings}. Open items: <b>{rep.open_items:,}</b>.")
    table(
        ["request", "started", "tenant", "verdict", "state"],
        [
            [o.request_id, _t(o.started_at), o.tenant, o.verdict, "escalated" if o.escalated else "not reviewed"]
            for o in rep.open_sample
        ],
    )
    para("Policy versions in force", "Heading2")
    table(
        ["policy", "version", "requests", "first seen", "last seen", "saved by"],
        [
            [p.name, p.version[:19], f"{p.requests:,}", _t(p.first_seen), _t(p.last_seen), p.saved_by or "-"]
            for p in rep.policies
        ],
    )
    for p in rep.policy_changes:
        para(
            _e(f"{_t(p.saved_at)}: {p.name} {p.version[:19]} saved by {p.saved_by}" + (f": {p.note}" if p.note else ""))
        )
    para("Erasures", "Heading2")
    if not rep.erasures:
        para("None in this period.")
    for x in rep.erasures:
        para(_e(f"{_t(x.at)}: {x.records:,} records ({x.scope} {x.selector}) by {x.actor}"))
    # A path as a string, a stream as itself: str() of a stream is a file name ("<_io.BytesIO ...>")
    # that reportlab would create in the working directory, leaving the stream empty.
    target = str(out) if isinstance(out, Path) else out
    doc = SimpleDocTemplate(
        target, pagesize=A4, title=TITLE, author="Warden", leftMargin=1.5 * cm, rightMargin=1.5 * cm
    )
    doc.build(story)  # type: ignore[arg-type]
