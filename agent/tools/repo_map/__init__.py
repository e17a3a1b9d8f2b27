"""The repo map and the symbols under it: ranked_map.py is the tool (tags per file, a reference graph,
pagerank.py ranks it), tags.py caches tags per file, symbols.py finds definitions with the tree-sitter
queries in symbol_queries/ (also used by the outline tool)."""
