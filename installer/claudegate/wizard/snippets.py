"""Ready-to-paste snippets for a new client key (pure text; the result screen shows them)."""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from pathlib import Path

__all__ = ["snippet_model", "snippets"]

#: Current model aliases, most useful first: the snippet asks for the first one the client may use.
_CANDIDATES = ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-5", "claude-opus-4-1", "claude-sonnet-4-0",
               "claude-3-7-sonnet-latest", "claude-3-5-haiku-latest")
_GLOB_CHARS = set("*?[")


def snippet_model(globs: Sequence[str]) -> str:
    """A model a client scoped to ``globs`` may use, so the pasted snippet answers 200, not 403."""
    for model in _CANDIDATES:
        if any(fnmatchcase(model, glob) for glob in globs):
            return model
    literal = next((g for g in globs if not _GLOB_CHARS & set(g)), None)
    if literal is not None:
        return literal
    # Only globs no known alias matches: the glob's fixed start is the best guess, and says what to change.
    return globs[0].split("*")[0].split("?")[0].split("[")[0].rstrip("-") if globs else _CANDIDATES[0]


def snippets(
    base_url: str, *, ca_file: Path | None, config_path: Path, model: str = _CANDIDATES[0]
) -> dict[str, str]:
    """{title: text}. The key itself is read from ``$CLAUDEGATE_KEY``, never pasted into shell history;
    ``model`` is one the new client may use (:func:`snippet_model`)."""
    cacert = f" --cacert {ca_file}" if ca_file is not None else ""
    trust = (
        f"export SSL_CERT_FILE={ca_file}    # trust the gateway's internal CA (Python, curl)\n"
        f"export NODE_EXTRA_CA_CERTS={ca_file}    # the same for Node / Claude Code\n"
        if ca_file is not None
        else ""
    )
    return {
        "curl": (
            f"curl{cacert} {base_url}/v1/messages \\\n"
            '  -H "x-api-key: $CLAUDEGATE_KEY" -H "anthropic-version: 2023-06-01" \\\n'
            '  -H "content-type: application/json" \\\n'
            f"  -d '{{\"model\": \"{model}\", \"max_tokens\": 256,"
            " \"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}]}'"
        ),
        "Python SDK": (
            f"{trust}"
            "import os, anthropic\n"
            f'client = anthropic.Anthropic(base_url="{base_url}", api_key=os.environ["CLAUDEGATE_KEY"])\n'
            f'print(client.messages.create(model="{model}", max_tokens=256,\n'
            '      messages=[{"role": "user", "content": "Hello"}]).content[0].text)'
        ),
        "Claude Code": (
            f"{trust}"
            f"export ANTHROPIC_BASE_URL={base_url}\n"
            'export ANTHROPIC_AUTH_TOKEN="$CLAUDEGATE_KEY"\n'
            f"export ANTHROPIC_MODEL={model}    # a model this key may use\n"
            "claude"
        ),
        "Redeploy": (
            f"claudegate deploy --config {config_path}     # no prompts; 'no changes' when nothing changed\n"
            f"claudegate init --config {config_path}       # this console again: status, keys, logs"
        ),
    }
