"""The form steps: target, upstream key, TLS, limits, allowlist."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Static

from claudegate.config.api_key import key_problem
from claudegate.errors import ClaudegateError
from claudegate.redact import Secret
from claudegate.wizard import core
from claudegate.wizard.form import GENERATED_KEY, SCREENS, TARGET, document, in_form_words
from claudegate.wizard.screens.base import StepScreen
from claudegate.wizard.widgets import FieldInput, copy_asked, show_message

__all__ = ["LimitsScreen", "NetworkScreen", "TLSScreen", "TargetScreen", "UpstreamScreen"]


class TargetScreen(StepScreen):
    INDEX = 0
    #: A connection test is running (a second press waits for it).
    testing = False

    def compose_extra(self) -> ComposeResult:
        with Horizontal(classes="actions"):
            yield Button("Generate key", id="generate", compact=True,
                         tooltip="Make a new ed25519 key pair for the deploy (at the SSH key path) and show its"
                         " public line.")
            yield Button("Test connection", id="test", compact=True,
                         tooltip="Connect (SSH, host key, sudo, Docker, ports 80/443); changes nothing.")
            yield Button("Copy public key", id="copy", compact=True, disabled=True,
                         tooltip="Ask the terminal to put the public key line on the clipboard.")
        yield Static("", id="pubkey", classes="output")
        yield Static("", id="report", classes="output")

    def on_value_changed(self, key: str) -> None:
        if key in ("target.host", "target.port", "target.mode"):
            self.state.host_key_fingerprint = None  # confirmed for another server

    def on_mount(self) -> None:
        super().on_mount()
        self._show_buttons()

    def revalidate(self) -> None:
        super().revalidate()
        self._show_buttons()

    def _show_buttons(self) -> None:
        server = self.state.values.get("target.mode", "server") != "local"
        self.query_one("#generate", Button).display = server
        self.query_one("#copy", Button).display = server  # no key to install on this machine

    @on(Button.Pressed, "#generate")
    def _generate(self) -> None:
        raw = str(self.state.values.get("target.ssh_key") or GENERATED_KEY)
        # A second press (or a key made by an earlier run) shows that key's public line again.
        line = core.public_key_line(Path(raw).expanduser())
        made = "This key pair exists already."
        if line is None:
            try:
                line = core.generate_deploy_key(Path(raw).expanduser())
            except ClaudegateError as exc:
                self.query_one("#pubkey", Static).update(f"{exc.message}; {exc.hint}")
                return
            made = "Made a new key pair."
        self.state.values["target.ssh_key"] = raw
        self.query_one("#f-target-ssh_key", Input).value = raw
        self.revalidate()  # the file exists now: its note goes
        self.public_key = line
        self.query_one("#copy", Button).disabled = False
        # The public line is longer than 80 columns: copied off the screen it breaks into pieces, so the
        # one-line command that installs it comes first.
        user = str(self.state.values.get("target.user") or "").strip()
        host = str(self.state.values.get("target.host") or "").strip() or "HOST"
        port = str(self.state.values.get("target.port") or "22").strip()
        copy_id = f"ssh-copy-id -i {raw}.pub" + (f" -p {port}" if port not in ("", "22") else "")
        copy_id += f" {user + '@' if user else ''}{host}"
        self.query_one("#pubkey", Static).update(Text.assemble(
            f"{made} Install it on the server from here (asks the server's password once):\n  ",
            (copy_id, "bold"),
            "\nor add this line to ~/.ssh/authorized_keys of the SSH user there:\n",
            line,
        ))

    @on(Button.Pressed, "#copy")
    def _copy(self) -> None:
        copy_asked(self.app, getattr(self, "public_key", ""), "the public key")

    @on(Button.Pressed, "#test")
    def _test(self) -> None:
        if self.blocked() or self.testing:
            return
        # The button stays enabled (and focused): disabling it moved the focus to Generate key, so a
        # second Enter, the usual impatient one, made a key pair nobody asked for.
        self.testing = True
        self.query_one("#report", Static).update("Connecting…")
        self._run_test()

    @work(thread=True, exclusive=True, group="test-connection")
    def _run_test(self) -> None:
        doc = document(self.state, upto=self.INDEX)
        try:
            cfg = core.build_config(doc, base_dir=Path.cwd())
            with core.open_session(cfg, self.wizard.interaction()) as session:
                report = core.test_connection(session)
        except ClaudegateError as exc:
            text = f"[b]Failed:[/b] {exc.message}" + (f"\nFix: {exc.hint}" if exc.hint else "")
            self.app.call_from_thread(self._tested, text, None)
            return
        verdict = "[b]Ready to deploy.[/b]" if report.ok else "[b]Not ready:[/b] " + "; ".join(report.problems)
        self.app.call_from_thread(self._tested, f"{verdict}\n{report.text()}", report.host_key_fingerprint)

    def _tested(self, text: str, fingerprint: str | None) -> None:
        self.testing = False
        if fingerprint:
            self.state.host_key_fingerprint = fingerprint
        self.query_one("#report", Static).update(text)


class UpstreamScreen(StepScreen):
    INDEX = 1

    def compose_first(self) -> ComposeResult:
        # The key box comes first and has the keys when the screen opens: a key pasted straight away
        # lands masked here, never in clear text in the Key file box.
        with Horizontal(classes="field-line"):
            yield Label("Anthropic key *", classes="field-label")
            yield FieldInput(
                password=True, id="api-key", compact=True,
                placeholder=self._key_placeholder(),
                tooltip="Paste the key (sk-ant-...): it is masked, saved only to the key file (0600), and"
                " the box is emptied when you leave the screen.",
            )
        message = Static("", id="msg-api-key", classes="field-message")
        message.display = False
        yield message

    def _key_placeholder(self) -> str:
        if self.state.upstream_key is not None:
            return "a key is set; type to replace it"
        if core.key_on_file(str(self.state.values.get("upstream.api_key_file", ""))):
            return "the key file holds a key; type to replace it"
        return "paste the key (sk-ant-...)"

    def compose_extra(self) -> ComposeResult:
        with Horizontal(classes="actions"):
            yield Button("Verify key (GET /v1/models)", id="verify", compact=True,
                         tooltip="One free call from this machine to the API URL: does the key work?")
        yield Static("", id="verified", classes="output")

    def compose(self) -> ComposeResult:
        if not self.state.values.get("upstream.api_key_file"):
            self.state.values["upstream.api_key_file"] = str(core.default_key_file())
        yield from super().compose()

    def initial_focus(self) -> Widget | None:
        return self.query_one("#api-key", Input)

    def _key_problem(self) -> str | None:
        key = self.state.upstream_key
        if key is None:
            if core.key_on_file(str(self.state.values.get("upstream.api_key_file", ""))):
                return None  # the file already holds one: keep it
            return "is required (it is saved only to the key file, 0600)"
        return key_problem(key.reveal())

    def extra_problems(self) -> dict[str, str]:
        problem = self._key_problem()
        out = {"api-key": problem} if problem else {}
        if self.state.upstream_key is None:  # a typed key rewrites the file 0600: its mode no longer matters
            key_file = str(self.state.values.get("upstream.api_key_file") or "")
            too_open = core.open_key_file_problem(key_file) if key_file else None
            if too_open:
                out["upstream.api_key_file"] = too_open
        return out

    def show_extra_messages(self, *, force: bool) -> dict[str, str]:
        key_box = self.query("#api-key")
        touched = force or "api-key" in self.touched or self.state.upstream_key is not None
        message = self.problems.get("api-key") if key_box and touched else None
        show_message(self.query_one("#msg-api-key", Static), message)
        return {"api-key": message} if message else {}

    @on(Input.Changed, "#api-key")
    def _key_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._take_key(event.value)

    def _take_key(self, text: str) -> None:
        value = text.strip()
        self.state.upstream_key = Secret(value) if value else self.state.upstream_key
        self.touched.add("api-key")
        self.revalidate()

    def read_box(self, box: Input) -> None:
        if box.id != "api-key":
            super().read_box(box)
        elif box.value.strip() and (self.state.upstream_key is None
                                    or self.state.upstream_key.reveal() != box.value.strip()):
            self._take_key(box.value)

    def leave(self) -> None:
        # The key leaves the screen with the operator: it lives on only as a Secret in memory.
        self.query_one("#api-key", Input).value = ""

    @on(Button.Pressed, "#verify")
    def _verify(self) -> None:
        key = self.state.upstream_key
        key_file = str(self.state.values.get("upstream.api_key_file") or "")
        if key is None:
            key = core.read_key_file(key_file)
        if key is None:
            self.query_one("#verified", Static).update(
                "No key to verify yet: paste it in the Anthropic key box (or choose a key file that holds one)."
            )
            return
        self.query_one("#verified", Static).update("Asking the API…")
        self._run_verify(str(self.state.values.get("upstream.base_url") or "https://api.anthropic.com"), key)

    @work(thread=True, exclusive=True, group="verify-key")
    def _run_verify(self, base_url: str, key: Secret) -> None:
        ok, message, fix = core.verify_upstream_key(base_url, key)
        text = ("OK: " if ok else "Failed: ") + message + (f"\nFix: {fix}" if fix else "")
        self.app.call_from_thread(self.query_one("#verified", Static).update, text)


class TLSScreen(StepScreen):
    INDEX = 2

    def compose_extra(self) -> ComposeResult:
        with Horizontal(classes="actions"):
            yield Button("Check", id="check", compact=True,
                         tooltip="acme: does the domain resolve to the target?  files: do key and certificate match?")
        yield Static("", id="checked", classes="output")

    @on(Button.Pressed, "#check")
    def _check(self) -> None:
        values = self.state.values
        self.query_one("#checked", Static).update("Checking…")
        self._run_check(dict(values))

    @work(thread=True, exclusive=True, group="tls-check")
    def _run_check(self, values: dict[str, object]) -> None:
        mode = values.get("tls.mode", "acme")
        domain = str(values.get("domain") or "")
        if mode == "files":
            try:
                chain = values.get("tls.chain_file")
                text = "Certificate and key match: " + core.check_tls_files(
                    domain,
                    Path(str(values.get("tls.cert_file"))).expanduser(),
                    Path(str(values.get("tls.key_file"))).expanduser(),
                    Path(str(chain)).expanduser() if chain else None,
                )
            except ClaudegateError as exc:
                text = in_form_words(f"Problem: {exc.message}" + (f"; {exc.hint}" if exc.hint else ""))
        elif mode == "acme":
            found = core.resolve(domain)
            host = str(values.get("target.host") or "")
            if not found:
                text = f"{domain} does not resolve from here: create its DNS record (A/AAAA) first."
            elif host and host in found:
                text = f"{domain} resolves to {', '.join(found)}: the target. Good."
            else:
                text = (f"{domain} resolves to {', '.join(found)}; the target is {host or 'this machine'}."
                        " Let's Encrypt will reach the first address: make sure it is the server.")
        else:
            text = "Internal CA: clients must trust the CA file the deploy writes to the state directory."
        self.app.call_from_thread(self.query_one("#checked", Static).update, text)


class LimitsScreen(StepScreen):
    INDEX = 3


class NetworkScreen(StepScreen):
    INDEX = 4

    def compose_extra(self) -> ComposeResult:
        yield Static("", id="lockout", classes="warning")

    def revalidate(self) -> None:
        super().revalidate()
        self.query_one("#lockout", Static).update(self._lockout_warning())

    def _lockout_warning(self) -> str:
        values = self.state.values
        ranges = []
        for text in str(values.get("allowlist") or "").replace(",", "\n").split():
            try:
                ranges.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                return ""
        if not ranges:
            return ""
        local = values.get("target.mode") == "local"
        host = "127.0.0.1" if local else str(values.get("target.host") or "")
        mine = core.own_address(host, 443) if host else None
        if mine is None:
            return ""
        address = ipaddress.ip_address(mine)
        if any(address in net for net in ranges if net.version == address.version):
            return ""
        return (f"Warning: your own address as the target sees it ({mine}) is not in the allowlist: the"
                " smoke test (run from here) and you will get 403. Add it, e.g. " + f"{mine}/32.")


STEP_SCREENS: dict[str, type[StepScreen]] = {
    "target": TargetScreen,
    "upstream": UpstreamScreen,
    "tls": TLSScreen,
    "limits": LimitsScreen,
    "network": NetworkScreen,
}
assert all(SCREENS[cls.INDEX].name == name for name, cls in STEP_SCREENS.items())
assert TARGET is SCREENS[0]
