"""The dashboard's Auditor's report page, with Streamlit's AppTest on real gateway requests."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from streamlit.testing.v1 import AppTest

from tests.dashboard_fixtures import PASSWORDS, Dash, dash, dashboard_seed

__all__ = ["dash", "dashboard_seed"]

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


def test_report_page_shows_the_period_and_offers_html_and_pdf(dash: Dash) -> None:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.text_input(key="login_name").input("vic")
    at.text_input(key="login_password").input(PASSWORDS["vic"])
    at.button(key="login_submit").click().run()
    at.switch_page("views/report.py").run()
    assert not at.exception, at.exception
    at.date_input(key="rpt_since").set_value(date(2000, 1, 1))
    at.button(key="rpt_run").click().run()
    assert not at.exception, at.exception
    shown = "\n".join(
        [str(e.value) for kind in ("title", "subheader", "markdown", "success", "error") for e in getattr(at, kind)]
        + [f"{m.label}={m.value}" for m in at.metric]
    )
    assert "Auditor's report" in shown
    assert "Integrity: verified" in shown
    assert "No anchors were checked" in shown
    total = sum(len(ids) for ids in dash.ids.values())
    assert f"Requests={total:,}" in shown
    for heading in ("Volume per day", "Blocks and redactions by check", "By tenant", "Policy versions in force"):
        assert heading in shown
    assert len(at.get("vega_lite_chart")) >= 2  # the charts
    assert len(at.get("download_button")) == 2  # HTML and PDF
    assert "open items" in shown.lower()


def test_report_pdf_from_the_page_renders(dash: Dash, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from audit.db import make_engine
    from audit.read.report import build_report
    from audit.read.report_render import render_pdf

    engine = make_engine(dash.database_url)
    rep = build_report(engine, datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
    out = tmp_path / "r.pdf"
    render_pdf(rep, out)
    page = pdfium.PdfDocument(str(out))[0]
    assert "Integrity: verified" in page.get_textpage().get_text_range()
    engine.dispose()


def test_report_pdf_into_a_stream_fills_the_stream(dash: Dash, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page's download button gets the PDF's bytes (a stream was once taken for a file name,
    leaving the download empty and a stray file in the working directory)."""
    import io
    from datetime import UTC, datetime

    from audit.db import make_engine
    from audit.read.report import build_report
    from audit.read.report_render import render_pdf

    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    engine = make_engine(dash.database_url)
    rep = build_report(engine, datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
    stream = io.BytesIO()
    render_pdf(rep, stream)
    assert stream.getvalue().startswith(b"%PDF")
    assert list(workdir.iterdir()) == []
    engine.dispose()
