"""The dashboard's ASGI app: Streamlit's own server (``st.App``) running ``app.py``, plus the
one route Streamlit cannot provide, which sets the session cookie as ``HttpOnly``
(``dashboard.session_cookie``). ``streamlit run dashboard/server.py`` finds ``app`` and serves it."""

from __future__ import annotations

import importlib

import streamlit as st

from dashboard import APP, charts
from dashboard.session_cookie import ROUTES

# Before the server answers: pandas (behind every table and chart) and the charts' specs, which
# otherwise cost the first page anyone opens several seconds on a busy machine.
importlib.import_module("pandas")
charts.warm()

app = st.App(APP, routes=ROUTES)
