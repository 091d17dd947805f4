"""The dashboard's entry point (``streamlit run dashboard/app.py``; ``warden dashboard`` runs it).

It logs the user in and offers only the pages their role may open. The menu is a convenience,
not the access control: every page also checks the role itself (``page_auth.require``), because a
page can be reached by URL.

The page files live in ``views/``, not ``pages/``: Streamlit treats a ``pages/`` folder beside
the entry script as an old-style multipage app until ``st.navigation`` first runs, which would
list every page to a visitor who has not logged in and run page files straight from their URL.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import streamlit as st

from audit.models import Role
from dashboard import page_auth, ui

# Import pandas (behind st.dataframe and Altair) whole, once, before any page uses it: two
# threads racing on a half-imported pandas fail with "partially initialized module".
importlib.import_module("pandas")


@dataclass(frozen=True, slots=True)
class PageSpec:
    path: str
    title: str
    icon: str
    role: Role
    section: str

    @property
    def url_path(self) -> str:
        return self.path.removeprefix("views/").removesuffix(".py")


PAGES = (
    PageSpec("views/overview.py", "Overview", ":material/monitoring:", Role.viewer, "Monitor"),
    PageSpec("views/live.py", "Live", ":material/sensors:", Role.viewer, "Monitor"),
    PageSpec("views/requests.py", "Requests", ":material/table_rows:", Role.viewer, "Review"),
    PageSpec("views/request.py", "Request detail", ":material/article:", Role.viewer, "Review"),
    PageSpec("views/review.py", "Review queue", ":material/rule:", Role.reviewer, "Review"),
    PageSpec("views/quality.py", "Check quality", ":material/insights:", Role.viewer, "Review"),
    PageSpec("views/policies.py", "Policies", ":material/policy:", Role.admin, "Govern"),
    PageSpec("views/integrity.py", "Integrity", ":material/verified:", Role.viewer, "Govern"),
    PageSpec("views/report.py", "Auditor's report", ":material/summarize:", Role.viewer, "Govern"),
)


def _login() -> None:
    st.title("Warden compliance dashboard")
    st.caption("Review flagged requests, rule on them, and manage policies.")
    page_auth.login_form(ui.engine(), ui.login_throttle())


def main() -> None:
    st.set_page_config(page_title="Warden", page_icon=":material/shield:", layout="wide")
    cfg = ui.settings()
    session = page_auth.current_session(cfg.idle_timeout_s, cfg.max_session_s)
    page_auth.sync_cookie()
    if session is None:
        # Every page's URL shows the login form (not "Page not found"), and keeps its path and
        # query, so after logging in the same URL opens the page it pointed to.
        logins = [st.Page(_login, title="Log in", url_path=spec.url_path, default=spec is PAGES[0]) for spec in PAGES]
        st.navigation([*logins, st.Page(_login, title="Log in", url_path="login")], position="hidden").run()
        return
    sections: dict[str, list[st.Page]] = {}
    for spec in PAGES:
        if session.allows(spec.role):
            page = st.Page(
                spec.path, title=spec.title, icon=spec.icon, url_path=spec.url_path, default=spec is PAGES[0]
            )
            sections.setdefault(spec.section, []).append(page)
    current = st.navigation(sections)
    with st.sidebar:
        st.caption(f"Logged in as **{session.user}** ({session.role.value})")
        if st.button("Log out", key="logout"):
            page_auth.logout()
            st.rerun()
    current.run()


main()
