"""A docutils parser for Google-style docstrings, for sphinx-autodoc2.

autodoc2 parses docstrings with any docutils parser named in
``autodoc2_docstring_parser_regexes``. This one rewrites the Google sections
(Args, Returns, Attributes, Example) into reStructuredText fields with
Sphinx's napoleon, then parses the result as reStructuredText.
"""

from __future__ import annotations

from docutils import nodes
from docutils.parsers.rst import Parser as RSTParser
from sphinx.ext.napoleon import Config
from sphinx.ext.napoleon.docstring import GoogleDocstring

_CONFIG = Config(napoleon_use_param=True, napoleon_use_rtype=False, napoleon_use_ivar=True)


class Parser(RSTParser):
    """reStructuredText parser that first expands Google-style sections."""

    supported = ("google",)

    def parse(self, inputstring: str, document: nodes.document) -> None:
        """Convert the Google sections, then parse as reStructuredText."""
        super().parse(str(GoogleDocstring(inputstring, _CONFIG)), document)
