"""The wizard's form model: what each screen asks, the document it builds, the problems it has.

No widgets here (a test drives it without Textual). The wizard keeps every
answer as the text the operator typed (``values``, keyed by the field's
path in ``deploy.yaml``), turns the answers into a ``deploy.yaml`` document
(:func:`document`), and asks the core what is wrong with it
(:func:`field_problems`): the core's :class:`~claudegate.config.Problem`
names a field (``limits.per_ip.burst``, ``allowlist[2]``), which maps back
to the input it came from. The only checks made here are the ones a form
must make before a document exists: "this box holds a number".

A value equal to its default is left out of the document, so the saved
YAML holds what the operator chose and a later release's better default
still applies to the rest.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, Literal

from claudegate.knobs import by_path, knob
from claudegate.redact import Secret

__all__ = [
    "CLIENT_FIELDS",
    "FILTER_PRESETS",
    "GENERATED_KEY",
    "MISSING_FILE_NOTES",
    "SCREENS",
    "FieldSpec",
    "ScreenSpec",
    "WizardState",
    "client_document",
    "document",
    "field_problems",
    "in_form_words",
    "merge_problems",
    "problem_count",
    "state_from_document",
]

Kind = Literal["text", "int", "choice", "bool", "lines", "path"]
Values = Mapping[str, Any]

#: Where "Generate key" writes a new deploy key when the SSH key box is empty.
GENERATED_KEY = "~/.ssh/claudegate_deploy"

#: ACME directories the staging switch chooses between (the config's own constants).
ACME_PRODUCTION = "https://acme-v02.api.letsencrypt.org/directory"
ACME_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"


@dataclass(frozen=True)
class FieldSpec:
    """One input: ``key`` is its path in deploy.yaml (``limits.per_ip.rate``) or a form-only name."""

    key: str
    label: str
    help: str
    kind: Kind = "text"
    default: str | bool = ""
    choices: tuple[tuple[str, str], ...] = ()  # (value, label)
    #: An example answer, shown greyed as "e.g. ..." in an empty box (never a value of its own).
    placeholder: str = ""
    #: What an empty box means ("{user}" is the operator's user name), shown greyed in an empty box.
    empty_means: str = ""
    required: bool = False
    #: Shown (and put in the document) only when this holds for the current values.
    when: Callable[[Values], bool] | None = None

    def shown(self, values: Values) -> bool:
        return self.when is None or self.when(values)

    def hint(self) -> str:
        """The greyed text of an empty box: what empty means and an example, never a saved value."""
        import getpass

        parts = []
        if self.empty_means:
            parts.append("empty: " + self.empty_means.replace("{user}", getpass.getuser()))
        elif self.default not in ("", False):
            parts.append(f"empty: {self.default}")
        if self.placeholder:
            parts.append(f"e.g. {self.placeholder}")
        return "; ".join(parts)


@dataclass(frozen=True)
class ScreenSpec:
    name: str
    title: str
    intro: str
    fields: tuple[FieldSpec, ...] = ()
    #: Document keys (and prefixes) whose problems belong to this screen besides its fields.
    owns: tuple[str, ...] = ()


def _knob_field(path: str) -> FieldSpec:
    """The input for a deploy.yaml knob: label, help and default from the knob table."""
    row = knob(path)
    return FieldSpec(path, row.label, row.help, "int" if row.kind == "int" else "text", row.form_default)


def _server(values: Values) -> bool:
    return values.get("target.mode") != "local"


def _tls_mode(*modes: str) -> Callable[[Values], bool]:
    return lambda values: values.get("tls.mode") in modes


#: The Limits screen's choice of content filters: (label, the deploy.yaml ``filters:`` list or None
#: to leave the key out, so the gateway's default applies).
FILTER_PRESET = "filters.preset"
_SECRETS_IN = {"name": "secrets", "detectors": ["all"], "direction": "request", "action": "block"}
_SECRETS_OUT = {"name": "secrets-out", "detectors": ["all"], "direction": "response", "action": "redact"}
_PII_OUT = {"name": "pii", "detectors": ["email", "phone"], "direction": "response", "action": "redact"}
FILTER_PRESETS: dict[str, tuple[str, list[dict[str, Any]] | None]] = {
    "default": ("Secrets blocked in requests (the default)", None),
    "both": ("Secrets: blocked in, redacted out", [_SECRETS_IN, _SECRETS_OUT]),
    "pii": ("Secrets both ways + e-mail/phone redacted out", [_SECRETS_IN, _SECRETS_OUT, _PII_OUT]),
    "off": ("Off (no content filtering)", []),
}

TARGET = ScreenSpec(
    "target",
    "Target",
    "Where the gateway runs: this machine, or a Linux server you reach over SSH.",
    (
        FieldSpec(
            "target.mode",
            "Deploy to",
            "This machine needs Docker or sudo rights to install it; a server needs SSH with sudo.",
            "choice",
            "server",
            (("server", "A server over SSH"), ("local", "This machine")),
        ),
        FieldSpec(
            "target.host", "Host", "The server's DNS name or IP address, as you would give it to ssh.",
            placeholder="gw.example.com or 203.0.113.10", required=True, when=_server,
        ),
        FieldSpec("target.port", "SSH port", "The port sshd listens on.", "int", "22", when=_server),
        FieldSpec(
            "target.user", "SSH user", "A user with passwordless sudo (or root).",
            placeholder="deploy", empty_means="{user} (your own user name, as ssh)", when=_server,
        ),
        FieldSpec(
            "target.ssh_key", "SSH key", "The private key file to log in with (mode 0600); empty: ssh-agent,"
            " then ~/.ssh/id_*. 'Generate' makes a new ed25519 key.", "path",
            empty_means="ssh-agent, then ~/.ssh/id_*", when=_server,
        ),
        FieldSpec(
            "images.base_image", "Base image", "The Debian image the gateway and nginx images build FROM;"
            " pulled on the target unless this machine has it (then sent over SSH).",
            default="debian:bookworm-slim",
        ),
    ),
    owns=("target", "images"),
)

UPSTREAM = ScreenSpec(
    "upstream",
    "Upstream",
    "Your Anthropic API key. It is saved only to the key file below (mode 0600), never in deploy.yaml,"
    " and is not shown again after you leave this box.",
    (
        FieldSpec(
            "upstream.api_key_file", "Key file", "Where the key is saved (mode 0600); the deploy reads it from"
            " here and copies it to a read-only secret on the server.", "path", required=True,
        ),
        FieldSpec(
            "upstream.base_url", "API URL", "Where the gateway sends requests; keep the default unless you"
            " test against another upstream.", default="https://api.anthropic.com",
        ),
    ),
    owns=("upstream",),
)

TLS_SCREEN = ScreenSpec(
    "tls",
    "TLS",
    "acme: a public server whose name resolves to it (Let's Encrypt).  files: you already have a"
    " certificate.  internal-ca: a trial or a private network (clients must trust the tool's CA).",
    (
        FieldSpec(
            "domain", "Domain", "The name your teams use: https://DOMAIN. Its DNS record must point at the"
            " server.", placeholder="gw.example.com", required=True,
        ),
        FieldSpec(
            "tls.mode", "Certificate from", "Where the certificate comes from.", "choice", "acme",
            (("acme", "ACME (Let's Encrypt)"), ("files", "My own files"), ("internal-ca", "Internal CA")),
        ),
        FieldSpec(
            "tls.email", "ACME email", "Where the CA sends expiry warnings.", placeholder="ops@example.com",
            required=True, when=_tls_mode("acme"),
        ),
        FieldSpec(
            "tls.staging", "Staging CA", "Let's Encrypt staging: untrusted certificates, generous limits;"
            " for a first try.", "bool", False, when=_tls_mode("acme"),
        ),
        FieldSpec(
            "tls.cert_file", "Cert file", "PEM: the certificate followed by its intermediates.", "path",
            required=True, when=_tls_mode("files"),
        ),
        FieldSpec(
            "tls.key_file", "Key file", "PEM, mode 0600; it must match the certificate.", "path",
            required=True, when=_tls_mode("files"),
        ),
        FieldSpec(
            "tls.chain_file", "Chain file", "Optional: the intermediates (and root), PEM.", "path",
            empty_means="the intermediates are in the cert file",
            when=_tls_mode("files"),
        ),
        FieldSpec(
            "tls.profile", knob("tls.profile").label, knob("tls.profile").help, "choice",
            knob("tls.profile").form_default,
            (("intermediate", "TLS 1.2 + 1.3"), ("modern", "TLS 1.3 only")),
        ),
    ),
    owns=("tls", "domain"),
)

LIMITS = ScreenSpec(
    "limits",
    "Limits",
    "Abuse limits nginx enforces before a request reaches the gateway. The defaults suit most teams.",
    (
        *(_knob_field(path) for path in (
            "limits.per_ip.rate", "limits.per_ip.burst", "limits.per_key.rate", "limits.per_key.burst",
            "limits.connections_per_ip", "limits.max_body_size", "limits.timeouts.client_body",
            "limits.timeouts.upstream_read",
        )),
        FieldSpec(
            FILTER_PRESET, "Content filters", "What the gateway looks for in requests and in the model's"
            " answers (API keys, private keys, card numbers; e-mail and phone numbers when chosen). Edit"
            " filters: in deploy.yaml for your own rules.", "choice", "default",
            tuple((name, label) for name, (label, _rules) in FILTER_PRESETS.items()),
        ),
    ),
    owns=("limits", "ports", "filters"),
)

NETWORK = ScreenSpec(
    "network",
    "Allowlist",
    "Who may call the gateway. Empty allowlist: everyone (keys still required). Separate ranges with"
    " commas or spaces.",
    (
        FieldSpec("allowlist", "Allowlist", "Client ranges allowed (CIDR, e.g. 203.0.113.0/24, or one"
                  " address); others get 403.", "lines", placeholder="203.0.113.0/24",
                  empty_means="everyone (keys still required)"),
        FieldSpec("trusted_proxies", "Trusted proxies", "Only if a load balancer sits in front: its"
                  " addresses, whose X-Forwarded-For is believed.", "lines", empty_means="none"),
    ),
    owns=("allowlist", "trusted_proxies"),
)

CLIENTS = ScreenSpec(
    "clients",
    "Clients",
    "Each client gets its own key (shown once after the deploy), with its own scopes and limits.",
    owns=("clients",),
)

REVIEW = ScreenSpec(
    "review",
    "Review",
    "What the deploy will change, and the deploy.yaml that will be saved.",
    (
        FieldSpec("save_path", "Save as", "Where deploy.yaml is saved; redeploy later with"
                  " claudegate deploy --config PATH.", "path", required=True),
    ),
    owns=("state_dir",),
)

DEPLOY = ScreenSpec("deploy", "Deploy", "Each step, its status and time; Cancel stops at a safe point.")
RESULT = ScreenSpec("result", "Result", "The smoke test, your client keys (shown once), how to use them.")

SCREENS: tuple[ScreenSpec, ...] = (TARGET, UPSTREAM, TLS_SCREEN, LIMITS, NETWORK, CLIENTS, REVIEW, DEPLOY, RESULT)

CLIENT_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("name", "Name", "Who uses this key: letters, digits, '.', '_', '-'.", placeholder="team-a",
              required=True),
    FieldSpec("models", "Models", "Model names or globs, comma separated.", "lines", "*",
              placeholder="claude-sonnet-*"),
    FieldSpec("endpoints", "Endpoints", "API paths or globs, comma separated.", "lines", "/v1/*"),
    FieldSpec("betas", "Betas", "anthropic-beta values allowed, comma separated; empty: any.", "lines",
              empty_means="any"),
    FieldSpec("max_tokens", "max_tokens cap", "Largest max_tokens a request may ask for; empty: no cap.",
              "int", empty_means="no cap"),
    FieldSpec("stream", "Streaming", "Allow stream: true.", "bool", True),
    FieldSpec("rpm", "Requests/min", "Empty: no limit.", "int", empty_means="no limit"),
    FieldSpec("tpm", "Tokens/min", "Empty: no limit.", "int", empty_means="no limit"),
    FieldSpec("daily_tokens", "Tokens/day", "Budget per UTC day; empty: no limit.", "int", empty_means="no limit"),
    FieldSpec("expires", "Expires", "ISO 8601 date or time the key stops working; empty: never.",
              placeholder="2027-06-30", empty_means="never"),
)


@dataclass
class WizardState:
    """Every answer so far. ``upstream_key`` is the one secret: never in :meth:`to_draft`."""

    values: dict[str, Any] = field(default_factory=dict)
    clients: list[dict[str, Any]] = field(default_factory=list)
    upstream_key: Secret | None = None
    #: Set when the operator confirmed the host key in the dialog (or it came from the config).
    host_key_fingerprint: str | None = None
    screen: int = 0
    #: Settings of a loaded deploy.yaml the form does not ask about (``ports.https``, ``network``...),
    #: by dotted path: saved back unchanged, so loading and saving loses nothing.
    extra: dict[str, Any] = field(default_factory=dict)
    #: The deploy.yaml a draft's answers are for (where the wizard that wrote it was to save).
    draft_for: str | None = None

    def get(self, spec: FieldSpec) -> Any:
        return self.values.get(spec.key, spec.default)

    def has_answers(self) -> bool:
        """Whether anything differs from a fresh start (a draft without answers is no draft)."""
        if self.clients or self.host_key_fingerprint or self.extra:
            return True
        specs = {f.key: f for screen in SCREENS for f in screen.fields}
        for key, value in self.values.items():
            spec = specs.get(key)
            default = spec.default if spec is not None else ""
            if key == "save_path" or value in ("", None) or str(value) == str(default):
                continue
            return True
        return False

    def to_draft(self) -> dict[str, Any]:
        return {
            "version": 1,
            "screen": self.screen,
            "values": dict(self.values),
            "clients": [dict(c) for c in self.clients],
            "host_key_fingerprint": self.host_key_fingerprint,
            "extra": dict(self.extra),
            "for": self.draft_for,
        }

    @classmethod
    def from_draft(cls, data: Mapping[str, Any]) -> WizardState:
        values = data.get("values")
        clients = data.get("clients")
        fingerprint = data.get("host_key_fingerprint")
        screen = data.get("screen")
        extra = data.get("extra")
        draft_for = data.get("for")
        return cls(
            draft_for=draft_for if isinstance(draft_for, str) else None,
            extra={str(k): v for k, v in extra.items()} if isinstance(extra, dict) else {},
            values={str(k): v for k, v in values.items() if isinstance(v, str | bool)}
            if isinstance(values, dict) else {},
            clients=[dict(c) for c in clients if isinstance(c, dict)] if isinstance(clients, list) else [],
            host_key_fingerprint=fingerprint if isinstance(fingerprint, str) else None,
            screen=screen if isinstance(screen, int) and 0 <= screen < SCREENS.index(DEPLOY) else 0,
        )


# --- from answers to a document ---------------------------------------------------------------


class _NotANumber(ValueError):
    pass


#: What separates the entries of a list box: commas or spaces (no entry of these lists holds either).
#: A ';' is split on too, so the other entries are still checked, but it is said under the box.
_SEPARATORS = re.compile(r"[,;\s]+")


def _lines(text: object) -> list[str]:
    if isinstance(text, list):
        return [str(t).strip() for t in text if str(t).strip()]
    return [part for part in _SEPARATORS.split(str(text or "")) if part]


def _convert(spec: FieldSpec, raw: Any) -> Any:
    """The document value of an answer; None leaves it out. Raises _NotANumber for a bad int."""
    if spec.kind == "bool":
        return bool(raw)
    if spec.kind == "lines":
        return _lines(raw)
    text = str(raw if raw is not None else "").strip()
    if not text:
        return None
    if spec.kind == "int":
        if not (text.isascii() and text.lstrip("-").isdigit()):
            raise _NotANumber(text)
        return int(text)
    return text


def _put(doc: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = doc
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def _is_default(spec: FieldSpec, value: Any) -> bool:
    if spec.kind == "lines":
        return bool(value == _lines(spec.default))
    # A deploy.yaml knob's default is the knob table's, whatever the input shows.
    row = by_path().get(spec.key)
    try:
        return bool(value == _convert(spec, row.form_default if row is not None else spec.default))
    except _NotANumber:
        return False


#: An example for a number box without a default (a client's limits): "e.g. 60" suits requests per minute,
#: not tokens per day.
_NUMBER_EXAMPLES = {"max_tokens": 8192, "rpm": 60, "tpm": 200000, "daily_tokens": 1000000}


def _fill(doc: dict[str, Any], specs: Sequence[FieldSpec], values: Values, bad: dict[str, str]) -> None:
    for spec in specs:
        if not spec.shown(values) or spec.key in ("target.mode", "tls.staging", "save_path", FILTER_PRESET):
            continue
        raw = values.get(spec.key, spec.default)
        if spec.kind == "lines" and ";" in str(raw or ""):
            bad[spec.key] = "';' does not separate entries; separate them with commas or spaces"
        try:
            value = _convert(spec, raw)
        except _NotANumber as exc:
            example = spec.default or _NUMBER_EXAMPLES.get(spec.key, 60)
            bad[spec.key] = f"{str(exc)!r} is not a whole number; type digits only, e.g. {example}"
            continue
        if value is None and spec.default not in ("", False) and _grouped(spec.key, values, specs):
            # An empty box of a group another answer changed means what its hint says ("empty: 40"),
            # not a missing key: the rate with its burst left empty keeps the default burst.
            value = _convert(spec, spec.default)
        if value is None or value == [] or (_is_default(spec, value) and not _grouped(spec.key, values, specs)):
            continue
        _put(doc, spec.key, value)


#: Sections whose keys go together: a rate limit with only its burst changed still needs its rate.
_GROUPS = ("limits.per_ip.", "limits.per_key.")


def _grouped(key: str, values: Values, specs: Sequence[FieldSpec]) -> bool:
    """Whether ``key`` belongs to a group in which another answer differs from its default."""
    group = next((g for g in _GROUPS if key.startswith(g)), None)
    if group is None:
        return False
    for other in specs:
        if other.key.startswith(group) and other.key in values:
            try:
                if not _is_default(other, _convert(other, values[other.key])):
                    return True
            except _NotANumber:
                return True
    return False


def client_document(client: Values, bad: dict[str, str] | None = None) -> dict[str, Any]:
    """One client's answers as its ``clients[]`` entry (defaults left out)."""
    out: dict[str, Any] = {}
    _fill(out, CLIENT_FIELDS, client, bad if bad is not None else {})
    if "name" not in out and client.get("name"):
        out["name"] = str(client["name"])
    asked = {f.key for f in CLIENT_FIELDS}
    # Settings of a loaded client the dialog does not ask (its filter overrides): kept as they were.
    out.update({k: v for k, v in client.items() if k not in asked and k not in out})
    return _ordered_client(out)


def _ordered_client(entry: dict[str, Any]) -> dict[str, Any]:
    order = [f.key for f in CLIENT_FIELDS]
    return {k: entry[k] for k in sorted(entry, key=lambda k: order.index(k) if k in order else len(order))}


#: Stand-ins for required answers of screens not reached yet, so the core checks the rest.
_PLACEHOLDERS: dict[str, Any] = {
    "domain": "gw.example.com",
    "tls.mode": "internal-ca",
    "upstream.api_key_file": "anthropic_api_key",
}


def document(
    state: WizardState, *, upto: int | None = None, bad: dict[str, str] | None = None
) -> dict[str, Any]:
    """The ``deploy.yaml`` document of the answers (of screens ``0..upto`` with placeholders after)."""
    values = state.values
    bad = bad if bad is not None else {}
    doc: dict[str, Any] = {}
    screens = SCREENS if upto is None else SCREENS[: upto + 1]
    local = values.get("target.mode") == "local"
    if SCREENS[0] in screens:
        _put(doc, "target.host", "local" if local else "")
    for screen in screens:
        _fill(doc, screen.fields, values, bad)
    if TARGET in screens and not local and state.host_key_fingerprint:
        _put(doc, "target.host_key_fingerprint", state.host_key_fingerprint)
    if TLS_SCREEN in screens and values.get("tls.mode", "acme") == "acme" and values.get("tls.staging"):
        _put(doc, "tls.acme_directory", ACME_STAGING)
    if TLS_SCREEN in screens and "tls" not in doc:
        _put(doc, "tls.mode", "acme")  # the default choice, required in the document
    if TLS_SCREEN in screens and "mode" not in doc["tls"]:
        doc["tls"] = {"mode": "acme", **doc["tls"]}
    if LIMITS in screens:
        _label, rules = FILTER_PRESETS.get(str(values.get(FILTER_PRESET, "default")), FILTER_PRESETS["default"])
        if rules is not None:
            doc["filters"] = [dict(rule) for rule in rules]
    if CLIENTS in screens:
        doc["clients"] = [client_document(c) for c in state.clients]
        if not doc["clients"]:
            del doc["clients"]
    for key in ("state_dir",):
        if values.get(key):
            doc[key] = values[key]
    if upto is None:
        for path, value in state.extra.items():
            if not _has(doc, path):
                _put(doc, path, value)
        # A kept setting inside a rate-limit group (its zone_size) needs the group's rate and burst.
        for group in _GROUPS:
            if _has(doc, group.rstrip(".")):
                for spec in LIMITS.fields:
                    if spec.key.startswith(group) and not _has(doc, spec.key):
                        with suppress(_NotANumber):  # the Limits screen says so under the field
                            _put(doc, spec.key, _convert(spec, values.get(spec.key, spec.default)))
    if upto is not None:
        for key, value in _PLACEHOLDERS.items():
            head, _, tail = key.partition(".")
            if (head not in doc) or (tail and not doc[head].get(tail)):
                _put(doc, key, value)
    return _ordered(doc)


def _has(doc: dict[str, Any], path: str) -> bool:
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


_ORDER = ("target", "domain", "tls", "upstream", "ports", "limits", "allowlist", "trusted_proxies",
          "clients", "filters", "images", "network", "state_dir")


def _ordered(doc: dict[str, Any]) -> dict[str, Any]:
    """The sections in the order the examples use (yaml.safe_dump keeps insertion order with sort_keys=False)."""
    return {key: doc[key] for key in sorted(doc, key=lambda k: _ORDER.index(k) if k in _ORDER else 99)}


# --- problems, field by field ---------------------------------------------------------------


def _field_of(problem_field: str, keys: Iterable[str]) -> tuple[str, str] | None:
    """The form key a core problem is about, and a prefix naming the list entry (``entry 3: ``)."""
    keys = list(keys)
    base, bracket, rest = problem_field.partition("[")
    if bracket and base in keys:
        index = rest.split("]", 1)[0]
        label = f"entry {int(index) + 1}: " if index.isdigit() else ""
        return base, label
    best = None
    for key in keys:
        matches = problem_field == key or problem_field.startswith(key + ".")
        if matches and (best is None or len(key) > len(best)):
            best = key
    if best is not None:
        return best, ""
    # A problem about a section (``tls``) goes to the section's first field.
    for key in keys:
        if key.startswith(problem_field + "."):
            return key, ""
    return None


def map_problems(problems: Iterable[tuple[str, str]], keys: Iterable[str]) -> dict[str, str]:
    """``(field, message)`` pairs from the core -> {form key: every message, one a line}.

    Every problem of a field is kept (a list box with two bad entries says both), so one round of
    fixing is enough; :func:`problem_count` counts them.
    """
    keys = list(keys)
    out: dict[str, list[str]] = {}
    for problem_field, message in problems:
        found = _field_of(problem_field, keys)
        if found is None:
            continue
        key, prefix = found
        _add(out, key, prefix + message)
    return {key: "\n".join(messages) for key, messages in out.items()}


def _add(out: dict[str, list[str]], key: str, message: str) -> None:
    for line in message.splitlines() or [""]:
        if line not in out.setdefault(key, []):
            out[key].append(line)


def problem_count(problems: Mapping[str, str]) -> int:
    """How many problems ``problems`` holds: one a line, as they are shown under the fields."""
    return sum(len(message.splitlines()) for message in problems.values())


def merge_problems(first: Mapping[str, str], more: Mapping[str, str]) -> dict[str, str]:
    """Both sets of problems, a field's messages one a line (a message said twice is said once)."""
    out: dict[str, list[str]] = {}
    for source in (first, more):
        for key, message in source.items():
            _add(out, key, message)
    return {key: "\n".join(messages) for key, messages in out.items()}


def field_problems(
    state: WizardState,
    screen: int,
    check: Callable[[dict[str, Any]], list[tuple[str, str]]],
) -> dict[str, str]:
    """{form key: message} for the fields of ``SCREENS[screen]`` (empty: Next may go on).

    ``check`` is the core's validation of a document, returning (field, message) pairs.
    """
    spec = SCREENS[screen]
    values = state.values
    bad: dict[str, str] = {}
    doc = document(state, upto=screen, bad=bad)
    shown = [f for f in spec.fields if f.shown(values)]
    out: dict[str, str] = {}
    for f in shown:
        if f.key in bad:
            out[f.key] = bad[f.key]
        elif f.required and not str(values.get(f.key, f.default) or "").strip():
            out[f.key] = REQUIRED + (f"; e.g. {f.placeholder}" if f.placeholder else "")
    keys = [f.key for f in shown] + [k for k in spec.owns if k not in {f.key for f in shown}]
    core: dict[str, str] = {}
    for key, message in map_problems([(f, in_form_words(m)) for f, m in check(doc)], keys).items():
        visible = _visible_key(key, shown)
        core[visible] = core[visible] + "\n" + message if visible in core else message
    # A required box that is empty has that one problem (the core's "missing" says it again); a box whose
    # text is not a number was left out of the document, so the core's "is required" about it is noise.
    core = {k: m for k, m in core.items() if not out.get(k, "").startswith(REQUIRED)}
    core = {k: "\n".join(line for line in m.splitlines() if not (k in bad and line.startswith(REQUIRED)))
            for k, m in core.items()}
    core = {k: m for k, m in core.items() if m}
    return merge_problems(out, core)


#: File boxes whose file may come later (a key made by Generate, a certificate copied over): a missing file
#: is a note under the box, not a problem, with what to do about it before the deploy (which needs it).
MISSING_FILE_NOTES: dict[str, str] = {
    "target.ssh_key": "Generate key makes it there, or correct the path",
    "tls.cert_file": "put the certificate (PEM) there before the deploy, or correct the path",
    "tls.key_file": "put the private key (PEM, 0600) there before the deploy, or correct the path",
    "tls.chain_file": "put the intermediates (PEM) there before the deploy, or empty the box",
}

#: The start of the message of an empty required box (shown only once the box was touched, or on Next).
REQUIRED = "is required"


def _visible_key(key: str, shown: list[FieldSpec]) -> str:
    """A problem about an owned key without an input (``tls``) shows on the screen's first field."""
    if any(f.key == key for f in shown) or not shown:
        return key
    return shown[0].key


#: The core's fixes that name a deploy.yaml key, as the form says them (what to do in the box).
_FORM_WORDS = {
    "remove expires: for a key that does not expire": "empty the Expires box for a key that never expires",
    # The TLS screen's choice, as the screen names it ("or tls.mode: internal-ca to try it out").
    "tls.mode: internal-ca": "Certificate from: Internal CA",
    "tls.mode: files": "Certificate from: My own files",
    "tls.mode: acme": "Certificate from: ACME",
    "tls.mode is files": "Certificate from is My own files",
    "tls.mode is acme": "Certificate from is ACME",
    # The Target screen's boxes ("203.0.113.10:2222 includes a port; write host: ... in target.port").
    "write host: ": "write only ",
    "in target.port": "in the SSH port box",
    "in target.user": "in the SSH user box",
    # The TLS check's fix ("check tls.cert_file / tls.key_file"): the boxes by their labels.
    "tls.cert_file / tls.key_file": "the Cert file and Key file boxes",
}


def in_form_words(message: str) -> str:
    """A core message that names deploy.yaml keys, in the words of the form's boxes."""
    for yaml_words, form_words in _FORM_WORDS.items():
        message = message.replace(yaml_words, form_words)
    return message


def client_problems(
    client: Values, others: Iterable[str], check: Callable[[dict[str, Any]], list[tuple[str, str]]]
) -> dict[str, str]:
    """{client field: message} for one client being edited; ``others`` are the other clients' names."""
    bad: dict[str, str] = {}
    entry = client_document(client, bad)
    out = dict(bad)
    if not str(client.get("name") or "").strip():
        out["name"] = REQUIRED + "; a name such as team-a"
    elif str(client.get("name")).strip() in set(others):
        out["name"] = "another client has this name; choose another"
    # A stand-in name while the box is empty, so the core checks the other fields in the same round.
    doc = {"target": {"host": "local"}, "domain": "gw.example.com", "tls": {"mode": "internal-ca"},
           "clients": [{"name": "client", **entry} if "name" in out else entry]}
    said = check(doc)
    if "name" not in out and any(f == "clients[0].name" for f, _ in said):
        # A refused name hides the rules on the other fields (the entry is left out of them): their
        # problems come from a second look under a stand-in name, so one round shows them all.
        again = check({**doc, "clients": [{**entry, "name": "client"}]})
        said = [(f, m) for f, m in said if f == "clients[0].name"] + [(f, m) for f, m in again
                                                                    if f != "clients[0].name"]
    prefixed = [(f.removeprefix("clients[0]."), in_form_words(m)) for f, m in said
                if f.startswith("clients[0]")]
    core = map_problems(prefixed, [f.key for f in CLIENT_FIELDS])
    if "name" in out:
        core.pop("name", None)  # about the stand-in, or a repeat of the form's own message
    return merge_problems(out, core)


# --- from a saved deploy.yaml back to answers -----------------------------------------------------

#: Document keys the form writes itself besides its fields.
_DERIVED = ("target.host", "target.host_key_fingerprint", "tls.acme_directory", "filters", "clients")


def _leaves(node: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, node


def _answer(spec: FieldSpec, value: Any) -> Any:
    """A document value as the text (or bool) the form's box holds."""
    import datetime

    if spec.kind == "bool":
        return bool(value)
    if isinstance(value, datetime.date):  # YAML reads an unquoted date as one
        return value.isoformat()
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return "" if value is None else str(value)


def state_from_document(doc: Mapping[str, Any]) -> WizardState:
    """The answers of a saved deploy.yaml, so ``init`` edits it instead of starting empty.

    Everything the form does not ask about is kept in :attr:`WizardState.extra` and saved back as it was.
    """
    hosts = doc.get("hosts")
    if isinstance(hosts, list) and len(hosts) == 1 and isinstance(hosts[0], dict) and doc.get("target") in (
        None, hosts[0],
    ):
        # hosts: with one entry is the deploy target: is (docs/multihost.md): edited and saved as target:.
        doc = {**{k: v for k, v in doc.items() if k != "hosts"}, "target": hosts[0]}
    specs = [f for screen in SCREENS for f in screen.fields if f.key != "save_path"]
    by_key = {f.key: f for f in specs}
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    state = WizardState(values=values, extra=extra)
    host = str(((doc.get("target") or {}).get("host")) or "")
    values["target.mode"] = "local" if host == "local" else "server"
    if host and host != "local":
        values["target.host"] = host
    fingerprint = (doc.get("target") or {}).get("host_key_fingerprint")
    state.host_key_fingerprint = str(fingerprint) if fingerprint else None
    tls = doc.get("tls") or {}
    if tls.get("acme_directory") == ACME_STAGING:
        values["tls.staging"] = True
    elif tls.get("acme_directory") not in (None, ACME_PRODUCTION):
        extra["tls.acme_directory"] = tls["acme_directory"]
    rules = doc.get("filters")
    preset = next((name for name, (_label, r) in FILTER_PRESETS.items() if r == rules), None)
    if preset is not None:
        values[FILTER_PRESET] = preset
    elif rules is not None:
        extra["filters"] = rules  # the operator's own rules: kept, the preset box stays "default"
    client_keys = {f.key for f in CLIENT_FIELDS}
    for entry in doc.get("clients") or []:
        if isinstance(entry, dict):
            state.clients.append({k: (_answer(next(f for f in CLIENT_FIELDS if f.key == k), v)
                                      if k in client_keys else v) for k, v in entry.items()})
    for path, value in _leaves({k: v for k, v in doc.items() if k not in ("clients", "filters")}):
        spec = next((by_key[k] for k in by_key if path == k), None)
        if spec is not None:
            values[spec.key] = _answer(spec, value)
        elif path not in _DERIVED and not any(path.startswith(k + ".") for k in by_key):
            extra[path] = value
    return state
