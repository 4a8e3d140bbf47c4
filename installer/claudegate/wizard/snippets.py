"""Ready-to-paste snippets for a new client key (pure text; the result screen shows them)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["snippets"]


def snippets(base_url: str, *, ca_file: Path | None, config_path: Path) -> dict[str, str]:
    """{title: text}. The key itself is read from ``$CLAUDEGATE_KEY``, never pasted into shell history."""
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
            "  -d '{\"model\": \"claude-sonnet-4-5\", \"max_tokens\": 256,"
            " \"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}]}'"
        ),
        "Python SDK": (
            f"{trust}"
            "import os, anthropic\n"
            f'client = anthropic.Anthropic(base_url="{base_url}", api_key=os.environ["CLAUDEGATE_KEY"])\n'
            'print(client.messages.create(model="claude-sonnet-4-5", max_tokens=256,\n'
            '      messages=[{"role": "user", "content": "Hello"}]).content[0].text)'
        ),
        "Claude Code": (
            f"{trust}"
            f"export ANTHROPIC_BASE_URL={base_url}\n"
            'export ANTHROPIC_AUTH_TOKEN="$CLAUDEGATE_KEY"\n'
            "claude"
        ),
        "Redeploy": (
            f"claudegate deploy --config {config_path}     # no prompts; 'no changes' when nothing changed\n"
            f"claudegate init --config {config_path}       # this console again: status, keys, logs"
        ),
    }
