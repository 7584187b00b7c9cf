"""The web console: one page that lists apps through the API, with the token kept in the tab."""

from __future__ import annotations

from flask import Blueprint, render_template

bp = Blueprint("console", __name__)


@bp.get("/")
def index():
    return render_template("console.html")
