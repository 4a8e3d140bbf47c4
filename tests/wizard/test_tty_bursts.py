"""Bursts of keys in a real 80x24 terminal (tmux), read off the screen: what Pilot's paced key presses
never show. Keys sent in one ``send-keys`` reach the app before any widget has handled the first."""

from __future__ import annotations

from tests.wizard.test_tty_walk import KEY, Pane, pane, under

__all__ = ["pane"]  # the fixture, shared with the walk


def _help_line(screen: str) -> str:
    """The line above Back/Next: the focused widget's help (its first line)."""
    rows = screen.splitlines()
    nav = next(i for i, row in enumerate(rows) if row.split()[:1] == ["Back"])
    return " ".join(" ".join(rows[nav - 2 : nav]).split())


def test_bursts_leave_the_help_with_the_focus_and_next_reads_every_box(pane: Pane) -> None:
    pane.wait_for("Test connection")
    pane.keys("Tab")
    pane.type("203.0.113.10")
    pane.keys("Tab", "Tab")
    pane.type("deploy")
    # Three Tabs at once, from SSH user past SSH key and Base image to Generate key: the help line is
    # Generate key's (a late focus event of a box overwrote it with the Base image's).
    pane.keys("Tab", "Tab", "Tab")
    screen = pane.wait_for("Make a new ed25519")
    assert "Debian image" not in _help_line(screen), screen
    pane.keys("C-n")

    pane.wait_for("Anthropic key *")
    pane.paste(KEY)
    pane.wait_for("•" * 8)
    pane.keys("C-n")
    pane.wait_for("Domain *")
    pane.type("gw.example.com")
    pane.keys("Tab", "Tab")
    pane.type("ops@example.com")
    pane.keys("C-n")
    pane.wait_for("Rate per IP")
    pane.keys("C-n")

    # Allowlist: both boxes wrong, then emptied and Next in one burst. The first box's Ctrl+U was still
    # queued when Ctrl+N came: Next counted "2 problems to fix", drew none, and stayed.
    pane.wait_for("Trusted proxies")
    pane.type("nonsense, 10.0.0.1/8")
    pane.keys("Tab")
    pane.type("bad")
    screen = pane.wait_for("'bad' is not")
    under(screen, "Trusted proxies", "'bad' is not an IPv4 or IPv6 address range")
    pane.keys("BTab", "C-u", "Tab", "C-u", "C-n")
    screen = pane.wait_for("No clients yet")
    assert "to fix" not in screen, screen


def test_a_dropdown_answered_in_one_burst_chooses(pane: Pane) -> None:
    """Enter, Down, Enter sent at once on "Deploy to": the second option is chosen and the list closed
    (the Down and Enter reached the closed dropdown before the list had the focus, and it stayed open)."""
    screen = pane.wait_for("Test connection")
    assert "A server over SSH" in screen
    pane.keys("Enter", "Down", "Enter")
    screen = pane.wait_for("This machine")
    screen = pane.wait_gone("Host *")  # the server's boxes go with the choice
    row = next(line for line in screen.splitlines() if "Deploy to" in line)
    assert "This machine" in row, screen
    assert "A server over SSH" not in screen, screen  # the list is closed
    assert "Dismiss menu" not in screen, screen
    # The dropdown keeps the focus: the next Tab goes on to the next field, whose help shows.
    pane.keys("Tab")
    pane.wait_for("The Debian image")


def _to_clients(pane: Pane) -> None:
    pane.wait_for("Test connection")
    pane.keys("Tab")
    pane.type("203.0.113.10")
    pane.keys("C-n")
    pane.wait_for("Anthropic key *")
    pane.paste(KEY)
    pane.wait_for("•" * 8)
    pane.keys("C-n")
    pane.wait_for("Domain *")
    pane.type("gw.example.com")
    pane.keys("Tab", "Tab")
    pane.type("ops@example.com")
    pane.keys("C-n")
    pane.wait_for("Rate per IP")
    pane.keys("C-n")
    pane.wait_for("Trusted proxies")
    pane.keys("C-n")
    pane.wait_for("No clients yet")


def test_a_client_typed_and_saved_in_one_burst_is_saved(pane: Pane) -> None:
    """A name typed and Ctrl+S at once: Save read the box before the name was in it, refused with "1
    problem to fix" beside a box showing a good name, and the toast saying so covered Cancel."""
    _to_clients(pane)
    pane.keys("a")
    pane.wait_for("Name *")
    pane.keys("C-s")  # nothing typed: refused, said under the box and beside the buttons, Cancel in sight
    screen = pane.wait_for("1 to fix")
    under(screen, "Name *", "is required")
    buttons = next(row for row in screen.splitlines() if "Save" in row and "Cancel" in row)
    assert "1 to fix" in buttons, screen
    pane.keys("t", "e", "a", "m", "-", "a", "C-s")
    screen = pane.wait_gone("Name *")
    row = next(line for line in screen.splitlines() if "team-a" in line)
    assert "*" in row, screen  # the table's row: team-a, every model
    assert "No clients yet" not in screen, screen
