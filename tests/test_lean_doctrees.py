"""Stored doctrees hold their page only, not a copy of the build environment.

docs/_ext/lean_doctrees.py moves nodes that still point at the document a
docstring was parsed in (and through its settings at the environment) to
their page's document. The unit tests build that situation with docutils;
tests/site/test_doctrees.py reads the doctrees of the book's own build, where
sphinx-autodoc2 creates it.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from docutils import nodes
from docutils.frontend import get_default_settings
from docutils.parsers.rst import Parser
from docutils.utils import new_document

from tests.conftest import extension

lean_doctrees = extension("lean_doctrees")


class Heavy:
    """Stands in for the build environment: large, and reachable from settings."""

    def __init__(self) -> None:
        self.database = [f"{i:08d}" * 125 for i in range(1000)]  # about 1 MB pickled


def _page_with_a_parsed_docstring() -> tuple[nodes.document, nodes.paragraph]:
    settings = get_default_settings(Parser)
    page = new_document("page", settings)
    docstring = new_document("docstring", get_default_settings(Parser))
    docstring.settings.env = Heavy()  # as a nested parse's settings carry the environment
    paragraph = nodes.paragraph("", "", nodes.Text("A docstring."))
    docstring += paragraph  # parsed there: its document is the docstring's
    section = nodes.section()
    page += section
    section += paragraph.deepcopy()  # a copy keeps the reference as well
    section[0].document = docstring
    return page, section[0]


def test_a_node_parsed_elsewhere_drags_the_environment_into_the_pickle() -> None:
    page, _ = _page_with_a_parsed_docstring()
    assert len(pickle.dumps(page)) > 500_000  # the situation the extension removes


def test_adopted_nodes_belong_to_their_page_and_the_pickle_is_small() -> None:
    page, moved = _page_with_a_parsed_docstring()
    assert lean_doctrees.adopt_nodes(page) == 2  # the paragraph and its text
    assert moved.document is page
    assert moved.astext() == "A docstring."  # the content is unchanged
    assert len(pickle.dumps(page)) < 20_000
    assert lean_doctrees.adopt_nodes(page) == 0  # nothing left to move


def test_nodes_without_a_document_of_their_own_are_left_alone() -> None:
    page = new_document("page", get_default_settings(Parser))
    page += nodes.paragraph("", "", nodes.Text("Plain."))
    assert lean_doctrees.adopt_nodes(page) == 0


def test_conf_loads_the_extension() -> None:
    conf = (Path(__file__).resolve().parents[1] / "conf.py").read_text(encoding="utf-8")
    assert 'extensions.append("lean_doctrees")' in conf
