"""The dashboard's ASGI app: Streamlit's own server (``st.App``) running ``app.py``, plus the
one route Streamlit cannot provide, which sets the session cookie as ``HttpOnly``
(``dashboard.session_cookie``). ``streamlit run dashboard/server.py`` finds ``app`` and serves it."""

from __future__ import annotations

import streamlit as st

from dashboard import APP
from dashboard.session_cookie import ROUTES

app = st.App(APP, routes=ROUTES)
