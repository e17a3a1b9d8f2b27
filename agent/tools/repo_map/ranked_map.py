"""repo_map: the repository's most important definitions, ranked, within a token budget.

How it ranks (the idea of aider's repo map, our own code):
1. tags per file (tags.py): definitions by tree-sitter, referenced identifiers;
2. a graph over files: file R points to file D when R names something D defines, weighted by
   sqrt(occurrences) and how telling the name is (long names count more; private, very short
   and widely defined names less); a use counts fully only when R shows a sign of meaning D's
   definition (it names D's module or package, or shares D's package in Go/Java), else at
   UNRELATED_FACTOR: that keeps `str` in a file from pointing at a `def str` elsewhere;
3. PageRank over that graph (focus files, e.g. those in the conversation, get the restarts);
4. each definition scores the rank that flows to it along the edges of its name;
5. the best definitions are rendered, file path then signature lines (a method brings its
   class line along), until the budget is used.
Tokens are estimated as characters / 4, the usual ratio for code with BPE tokenizers; the map
is meant to land near, never above, the budget by that estimate.
"""

from __future__ import annotations

import math
import posixpath
import time
from dataclasses import dataclass
from typing import Any

from agent.tools.base import Permission, ToolBase, ToolContext, ToolResult
from agent.tools.repo_map.pagerank import Graph, pagerank
from agent.tools.repo_map.tags import FileTags, TagsCache, collect_tags
from agent.tools.workspace_paths import WorkspacePathError, display_path, resolve_workspace_path

CHARS_PER_TOKEN = 4
GENERIC_NAME_DEFINERS = 5  # a name defined in more files than this says little (run, get, __init__)
HUB_MIN_DEFINERS = 4  # from this many definers on, route a name through a hub (see pagerank.py)
UNRELATED_FACTOR = 0.1  # a use with no sign of which definition it means (see above)
MAX_EVIDENCE_CHECKS = 16  # names with more definers are too generic to be worth the pairwise checks
# Path words that appear in imports of unrelated files too (or never in imports at all).
GENERIC_PATH_WORDS = {
    "",
    "src",
    "lib",
    "__init__",
    "index",
    "mod",
    "main",
    "test",
    "tests",
    "testing",
    "spec",
}
SAME_PACKAGE_EXTENSIONS = {".go", ".java"}


@dataclass
class RankedDefinition:
    file_index: int
    def_index: int
    score: float


@dataclass
class RepoMap:
    text: str
    files: list[dict[str, Any]]
    estimated_tokens: int
    files_total: int
    files_parsed: int
    seconds: float


def name_weight(name: str, definer_count: int) -> float:
    weight = 1.0
    if len(name) >= 8 and ("_" in name.strip("_") or name != name.lower()):
        weight *= 3.0  # long descriptive names rarely collide by accident
    if name.startswith("_") or len(name) <= 2:
        weight *= 0.1
    if definer_count > GENERIC_NAME_DEFINERS:
        weight *= 0.1
    return weight


@dataclass
class ReferenceGraph:
    graph: Graph
    definers: dict[str, list[int]]  # name -> indexes of the files defining it
    direct: list[tuple[int, int, str, float]]  # (referrer, definer, name, weight)
    via_hub: list[tuple[int, str, float]]  # (referrer, name, weight)
    out_weight: list[float]


def build_reference_graph(tags: list[FileTags]) -> ReferenceGraph:
    definers: dict[str, list[int]] = {}
    for index, file_tags in enumerate(tags):
        for name in {definition[0] for definition in file_tags.definitions}:
            definers.setdefault(name, []).append(index)
    weights = {name: name_weight(name, len(files)) for name, files in definers.items()}
    files_by_word = _files_by_path_word(tags)
    same_package = [_same_package_key(t.path) for t in tags]
    files_by_package: dict[str, set[int]] = {}
    for index, key in enumerate(same_package):
        if key is not None:
            files_by_package.setdefault(key, set()).add(index)

    result = ReferenceGraph(Graph(len(tags)), definers, [], [], [0.0] * len(tags))
    graph, hubs = result.graph, {}
    for referrer, file_tags in enumerate(tags):
        references = file_tags.references
        # Files this one shows a sign of using: it names their module or package (imports,
        # includes, qualified names), or shares their package where no import is needed.
        related_files: set[int] = set(files_by_package.get(same_package[referrer], ()))
        for word in references.keys() & files_by_word.keys():
            related_files |= files_by_word[word]
        # Sorted: float sums then run in one order, so the map is the same in every process.
        for name in sorted(references.keys() & definers.keys()):
            files = definers[name]
            if len(files) == 1 and files[0] == referrer:
                continue
            weight = math.sqrt(references[name]) * weights[name]
            if len(files) <= MAX_EVIDENCE_CHECKS:
                targets = [f for f in files if f != referrer]
                related = [f for f in targets if f in related_files]
                if not related:
                    # No sign of where the name comes from: likely another thing of that name (a
                    # builtin, a library's); keep a little weight, spread over every definer.
                    weight *= UNRELATED_FACTOR
                if related or len(files) < HUB_MIN_DEFINERS:
                    targets = related or targets
                    for target in targets:
                        edge = weight / len(targets)
                        graph.add_edge(referrer, target, edge)
                        result.direct.append((referrer, target, name, edge))
                    result.out_weight[referrer] += weight
                    continue
            else:
                weight *= UNRELATED_FACTOR  # too generic a name to tell which definition is meant
            if name not in hubs:
                hubs[name] = graph.add_hub(files)
            graph.add_hub_edge(referrer, hubs[name], weight)
            result.via_hub.append((referrer, name, weight))
            result.out_weight[referrer] += weight
    return result


def rank_definitions(tags: list[FileTags], focus: set[str]) -> tuple[list[float], list[RankedDefinition]]:
    references = build_reference_graph(tags)
    personalization = None
    if focus:
        boost = float(len(tags))
        personalization = [boost if t.path in focus else 1.0 for t in tags]
    ranks = pagerank(references.graph, personalization)
    out_weight = references.out_weight

    # A definition scores the rank that reaches it along the edges of its name.
    score: dict[tuple[int, str], float] = {}
    for referrer, target, name, edge in references.direct:
        key = (target, name)
        score[key] = score.get(key, 0.0) + ranks[referrer] * edge / out_weight[referrer]
    # Hub names: all that flows in, less what a definer sent itself (it names its own thing).
    hub_inflow: dict[str, float] = {}
    own_part: dict[tuple[int, str], float] = {}
    for referrer, name, weight in references.via_hub:
        files = references.definers[name]
        is_definer = referrer in files
        flow = ranks[referrer] * weight / out_weight[referrer] / (len(files) - is_definer)
        hub_inflow[name] = hub_inflow.get(name, 0.0) + flow
        if is_definer:
            own_part[(referrer, name)] = flow
    for name, inflow in hub_inflow.items():
        for target in references.definers[name]:
            key = (target, name)
            score[key] = score.get(key, 0.0) + inflow - own_part.get(key, 0.0)

    ranked = []
    for index, file_tags in enumerate(tags):
        base = ranks[index] * 1e-3 / max(1, len(file_tags.definitions))  # orders unreferenced ones
        for def_index, definition in enumerate(file_tags.definitions):
            ranked.append(RankedDefinition(index, def_index, score.get((index, definition[0]), 0.0) + base))
    ranked.sort(key=lambda r: (-r.score, tags[r.file_index].path, r.def_index))
    return ranks, ranked


def _files_by_path_word(tags: list[FileTags]) -> dict[str, set[int]]:
    """Words an import or include of a file names (its stem, its directory), as written and
    lowercased, so `Button` finds Button.tsx and `button` finds ./button.js."""
    index: dict[str, set[int]] = {}
    for file_index, file_tags in enumerate(tags):
        parts = file_tags.path.split("/")
        words = {posixpath.splitext(parts[-1])[0]}
        if len(parts) > 1:
            words.add(parts[-2])
        for word in words:
            if word.lower() in GENERIC_PATH_WORDS:
                continue
            for variant in (word, word.lower()):
                index.setdefault(variant, set()).add(file_index)
    return index


def _same_package_key(path: str) -> str | None:
    if posixpath.splitext(path)[1] in SAME_PACKAGE_EXTENSIONS:
        return posixpath.dirname(path)
    return None


def render_map(tags: list[FileTags], ranked: list[RankedDefinition], max_tokens: int) -> tuple[str, list]:
    budget = max_tokens * CHARS_PER_TOKEN
    used = 0
    chosen: dict[int, set[int]] = {}
    best: dict[int, float] = {}
    for item in ranked:
        definitions = tags[item.file_index].definitions
        picked = chosen.get(item.file_index, set())
        if item.def_index in picked:
            continue
        group = [item.def_index]
        parent = definitions[item.def_index][4]
        while parent >= 0 and parent not in picked:  # show a method under its class
            group.append(parent)
            parent = definitions[parent][4]
        cost = sum(len(_render_line(definitions, i)) + 1 for i in group)
        if item.file_index not in chosen:
            cost += len(tags[item.file_index].path) + 2
        if used + cost > budget:
            if budget - used < 24:
                break  # nothing useful fits any more
            continue  # a cheaper, lower-ranked line may still fit
        used += cost
        chosen.setdefault(item.file_index, set()).update(group)
        best.setdefault(item.file_index, item.score)
    blocks, files = [], []
    for file_index in sorted(chosen, key=lambda i: (-best[i], tags[i].path)):
        file_tags = tags[file_index]
        indexes = sorted(chosen[file_index], key=lambda i: file_tags.definitions[i][2])
        lines = [f"{file_tags.path}:"] + [_render_line(file_tags.definitions, i) for i in indexes]
        blocks.append("\n".join(lines))
        files.append(
            {
                "path": file_tags.path,
                "definitions": [
                    {"name": d[0], "kind": d[1], "line": d[2]}
                    for d in (file_tags.definitions[i] for i in indexes)
                ],
            }
        )
    return "\n".join(blocks), files


def _render_line(definitions: list, index: int) -> str:
    """A signature indented by nesting depth (not by the source's indentation, which may come
    from an `if` or `try` around the definition)."""
    depth, parent = 0, definitions[index][4]
    while parent >= 0:
        depth, parent = depth + 1, definitions[parent][4]
    return "  " + "    " * depth + definitions[index][3].strip()


def build_repo_map(
    sandbox,
    max_tokens: int = 1024,
    focus: list[str] | None = None,
    *,
    cache_dir: str | None = None,
    workers: int | None = None,
) -> RepoMap:
    started = time.perf_counter()
    root = posixpath.normpath(sandbox.root)
    cache = TagsCache(f"{type(sandbox).__name__}:{root}", cache_dir)
    tags, parsed = collect_tags(sandbox, root, cache, workers=workers)
    focus_paths = {display_path(sandbox, resolve_workspace_path(sandbox, path)) for path in focus or []}
    _, ranked = rank_definitions(tags, focus_paths)
    text, files = render_map(tags, ranked, max_tokens)
    return RepoMap(
        text=text,
        files=files,
        estimated_tokens=math.ceil(len(text) / CHARS_PER_TOKEN),
        files_total=len(tags),
        files_parsed=parsed,
        seconds=time.perf_counter() - started,
    )


class RepoMapTool(ToolBase):
    name = "repo_map"
    description = (
        "A map of the repository's most important definitions (classes, functions, methods), "
        "ranked by how much the rest of the code refers to them: file paths, each followed by "
        "signature lines. Use it to find your way in an unfamiliar repository."
    )
    parameters = {
        "type": "object",
        "properties": {
            "max_tokens": {"type": "integer", "minimum": 64, "maximum": 16384, "default": 1024},
            "focus": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Files you are working on; the map favours what they use.",
            },
        },
        "additionalProperties": False,
    }
    permission = Permission.READ

    def run(self, args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        max_tokens = max(64, min(int(args.get("max_tokens", 1024)), 16384))
        try:
            repo_map = build_repo_map(ctx.sandbox, max_tokens, args.get("focus") or [])
        except WorkspacePathError as exc:
            return ToolResult(False, str(exc))
        data = {
            "files": repo_map.files,
            "estimated_tokens": repo_map.estimated_tokens,
            "files_total": repo_map.files_total,
            "files_parsed": repo_map.files_parsed,
        }
        if not repo_map.text:
            return ToolResult(True, "No definitions found in supported source files.", data)
        return ToolResult(True, repo_map.text, data)


TOOLS: list = [RepoMapTool()]
