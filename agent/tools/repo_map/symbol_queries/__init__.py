"""Tree-sitter queries (.scm) naming the symbol definitions of each language."""
