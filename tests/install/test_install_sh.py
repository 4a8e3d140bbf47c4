"""install.sh in a clean Debian container: piped to bash, idempotent, passes arguments through.

Containers here reach Debian's mirror but not PyPI, so the wheels are
downloaded on this side (for the container's platform) and mounted in; the
script's CLAUDEGATE_WHEELS switch is what an offline site would use too.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CACHE = Path("/var/cache/claudegate-test")
BASE = "claudegate/debian-base:bookworm"
IMAGE = "claudegate-test/python-base:bookworm"

pytestmark = pytest.mark.docker


def _sh(*argv: str, timeout: float = 600, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload, no-any-return]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lock = REPO / "installer" / "requirements.lock"
    digest = hashlib.sha256((REPO / "pyproject.toml").read_bytes() + lock.read_bytes()).hexdigest()[:12]
    deps = CACHE / f"install-wheels-{digest}"
    if not (deps / ".complete").exists():
        deps.mkdir(parents=True, exist_ok=True)
        # Exactly what install.sh will ask for: the locked, hashed dependencies.
        r = _sh(sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
                "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64",
                "--python-version", "3.11", "--implementation", "cp", "--require-hashes", "-r", str(lock),
                "-d", str(deps))
        assert r.returncode == 0, r.stderr[-2000:]
        (deps / ".complete").touch()
    out = tmp_path_factory.mktemp("wheels")
    out.chmod(0o755)  # the container runs as an ordinary user
    for parent in out.parents:
        if parent == Path(tempfile.gettempdir()):
            break
        parent.chmod(parent.stat().st_mode | 0o055)
    for whl in deps.glob("*.whl"):
        if not whl.name.startswith("claudegate-"):
            shutil.copy(whl, out / whl.name)
    # claudegate itself, built from this checkout.
    r = _sh(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(REPO))
    assert r.returncode == 0, r.stderr[-2000:]
    for whl in out.iterdir():
        whl.chmod(0o644)
    return out


@pytest.fixture(scope="module")
def image() -> str:
    if _sh("docker", "image", "inspect", IMAGE).returncode != 0:
        assert _sh("docker", "image", "inspect", BASE).returncode == 0, "run tests/infra/build-base-image.sh first"
        dockerfile = (f"FROM {BASE}\nRUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
                      "--no-install-recommends python3 python3-venv && rm -rf /var/lib/apt/lists/*\n"
                      "RUN useradd -m alice\n")
        r = _sh("docker", "build", "-t", IMAGE, "-", input=dockerfile)
        assert r.returncode == 0, r.stderr[-2000:]
    return IMAGE


def _run(image: str, wheels: Path, script: str) -> subprocess.CompletedProcess[str]:
    # The whole test runs in one container so the second install sees the first.
    return _sh("docker", "run", "--rm", "--network", "none", "--user", "alice",
               "-v", f"{REPO}/install.sh:/src/install.sh:ro", "-v", f"{wheels}:/wheels:ro",
               "-e", "CLAUDEGATE_WHEELS=/wheels", "-e", "CLAUDEGATE_SOURCE=claudegate",
               image, "bash", "-c", script)


def test_piped_install_is_idempotent_and_passes_arguments(image: str, wheels: Path) -> None:
    r = _run(image, wheels, """
        set -e
        cat /src/install.sh | bash -s -- --version
        echo ---second---
        bash /src/install.sh --help
        echo ---passed---
        bash /src/install.sh deploy --help
        echo ---after---
        ~/.local/bin/claudegate --version
        test -x ~/.local/share/claudegate/venv/bin/python
        echo ---render---
        printf 'target: {host: local}\\ndomain: gw.example.com\\ntls: {mode: internal-ca}\\nupstream: {api_key_env: K}\\n' > /tmp/ok.yaml
        ~/.local/bin/claudegate render --config /tmp/ok.yaml --out /tmp/out
        echo ---filters---
        # filters: are checked by the gateway's own validator, loaded from the installed assets.
        printf 'filters:\n  - {name: pii, detectors: [email], direction: response, action: redact}\n' >> /tmp/ok.yaml
        ~/.local/bin/claudegate render --config /tmp/ok.yaml --out /tmp/out2
        grep -r -l "direction: response" /tmp/out2
        head -4 /tmp/ok.yaml > /tmp/badrule.yaml
        printf 'filters:\n  - {name: bad, pattern: "a.*b"}\n' >> /tmp/badrule.yaml
        ~/.local/bin/claudegate render --config /tmp/badrule.yaml --out /tmp/out3 || echo "render exit $?"
        echo ---config---
        printf 'target: {host: local}\\n' > /tmp/bad.yaml
        bash /src/install.sh --config /tmp/bad.yaml || echo "deploy exit $?"
    """)
    assert r.returncode == 0, r.stdout + r.stderr
    first, rest = r.stdout.split("---second---")
    assert "claudegate 0.1.0" in first
    assert r.stderr.count("creating a virtualenv") == 1  # the second run reuses it
    second, rest = rest.split("---passed---")
    assert "usage: bash install.sh" in second  # the installer's own usage, nothing installed
    passed, rest = rest.split("---after---")
    assert "Usage: claudegate deploy" in passed  # a command is passed to the installed CLI
    after, rest = rest.split("---render---")
    assert "claudegate 0.1.0" in after
    # The installed wheel finds what goes onto the host (assets, templates).
    rendered, rest = rest.split("---filters---")
    filtered, config = rest.split("---config---")
    assert "gateway.yaml" in filtered and "render exit 2" in filtered
    assert "/tmp/badrule.yaml:6:17: filters[0].pattern: has an unbounded repeat" in r.stderr, r.stderr
    assert "/tmp/out/" in rendered and "gateway.yaml" in rendered and "Dockerfile" in rendered
    # --config goes to `claudegate deploy`, which names what is missing in the file.
    assert "deploy exit 2" in config
    assert "/tmp/bad.yaml" in r.stderr and "domain" in r.stderr


def test_clear_error_without_venv_support(image: str, wheels: Path) -> None:
    r = _sh("docker", "run", "--rm", "--network", "none", "-v", f"{REPO}/install.sh:/src/install.sh:ro",
            BASE, "bash", "/src/install.sh")
    assert r.returncode == 1
    assert "python3" in r.stderr and "fix:" in r.stderr


def test_wheel_carries_every_asset_playbook_and_example(wheels: Path) -> None:
    tracked = subprocess.run(["git", "ls-files", "assets", "playbooks", "examples"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.split()
    (wheel,) = wheels.glob("claudegate-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        shipped = {n.split("/data/share/claudegate/", 1)[1] for n in zf.namelist() if "/data/share/claudegate/" in n}
    assert set(tracked) | {"installer/requirements.lock"} == shipped


def _run_env(image: str, wheels: Path, script: str, **env: str) -> subprocess.CompletedProcess[str]:
    flags = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
    return _sh("docker", "run", "--rm", "--network", "none", "--user", "alice",
               "-v", f"{REPO}/install.sh:/src/install.sh:ro", "-v", f"{wheels}:/wheels:ro",
               "-e", "CLAUDEGATE_WHEELS=/wheels", *flags, image, "bash", "-c", script)  # fmt: skip


def test_the_script_pins_the_projects_version() -> None:
    import re
    import tomllib

    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    text = (REPO / "install.sh").read_text()
    assert re.search(rf'^CLAUDEGATE_PINNED_VERSION="{re.escape(version)}"$', text, re.M)
    # The release's hash: empty until a release is published, else 64 hex digits.
    assert re.search(r'^CLAUDEGATE_PINNED_SHA256="([0-9a-f]{64})?"$', text, re.M)


def test_piped_install_is_pinned_and_hash_checked(image: str, wheels: Path) -> None:
    (wheel,) = wheels.glob("claudegate-*.whl")
    good = hashlib.sha256(wheel.read_bytes()).hexdigest()
    bad = hashlib.sha256(b"someone else's wheel").hexdigest()
    # No CLAUDEGATE_SOURCE: piped, the script installs claudegate==<its pinned version>.
    refused = _run_env(image, wheels, """
        cat /src/install.sh | bash -s -- --version; echo "exit $?"
        test -e ~/.local/bin/claudegate && echo "INSTALLED" || echo "NOT INSTALLED"
    """, CLAUDEGATE_SHA256=bad)  # fmt: skip
    assert "installing claudegate from claudegate==0.1.0 (sha256 " + bad in refused.stderr, refused.stderr
    assert "pip refused claudegate" in refused.stderr and "exit 1" in refused.stdout
    assert "NOT INSTALLED" in refused.stdout
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in refused.stderr  # pip's own hash check said no

    ok = _run_env(image, wheels, "cat /src/install.sh | bash -s -- --version", CLAUDEGATE_SHA256=good)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"installing claudegate from claudegate==0.1.0 (sha256 {good})" in ok.stderr
    assert "claudegate 0.1.0" in ok.stdout

    for unpinned in ("claudegate>=0.1", "claudegate==0.1.*", "https://example.invalid/claudegate.whl", "other"):
        r = _run_env(image, wheels, "cat /src/install.sh | bash -s -- --version", CLAUDEGATE_SOURCE=unpinned)
        assert r.returncode == 1, (unpinned, r.stdout, r.stderr)
        assert "is not a pinned version" in r.stderr and "fix: set it to claudegate==0.1.0" in r.stderr


def test_the_dependency_lock_covers_every_dependency_with_hashes() -> None:
    import re
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    text = (REPO / "installer" / "requirements.lock").read_text()
    # name==version, an environment marker where it applies (the lock is universal), the hashes.
    entries = re.findall(r"^([A-Za-z0-9._-]+)==(\S+)(?: ;[^\\\n]*)? \\\n((?:\s+--hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)", text, re.M)
    locked = {canonicalize_name(name): version for name, version, _ in entries}
    assert len(entries) == len(re.findall(r"^[A-Za-z0-9]", text, re.M)), "every entry pins one version with hashes"
    for dep in deps:
        req = Requirement(dep)
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is not in installer/requirements.lock: regenerate it"
        assert req.specifier.contains(locked[name], prereleases=True), (dep, locked[name])
    assert "--index-url" not in text and "--find-links" not in text and "file://" not in text
