"""The units in systemd/: exposure score, ``systemd-analyze verify``, the sysusers and tmpfiles
snippets applied to a scratch root by the real tools, the exit codes systemd must not restart
on, and the agent running under the unit's sandbox.

The agent cannot be started under the unit itself here: ``systemd-run`` needs systemd as PID 1
(``test_agent_runs_under_the_unit`` says so when it is not). ``test_agent_runs_under_the_
equivalent_sandbox`` instead runs the real agent under what can be applied without systemd
(tests/systemd/sandbox_exec.py: read-only file system but the state dir, private /tmp, empty
/home, another user, no capabilities, no new privileges, and a seccomp filter built from the
unit's own SystemCallFilter=, RestrictAddressFamilies= and MemoryDenyWriteExecute=), and first
proves that those restrictions are in force.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_agent.errors import EXIT_FAILURE, NO_RESTART_EXIT_CODES

ROOT = Path(__file__).parents[2]
UNITS = ROOT / "systemd"
AGENT_UNIT = UNITS / "station-edge.service"
HUB_UNIT = UNITS / "edge-hub@.service"
VENV_BIN = Path(sys.executable).parent
ANALYZE = shutil.which("systemd-analyze")
MAX_EXPOSURE = 2.0

needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed (apt-get install systemd)")


def settings(unit: Path) -> dict[str, list[str]]:
    """``[Service]`` key -> values (continuation lines joined, repeated keys kept in order)."""
    out: dict[str, list[str]] = {}
    section = ""
    text = re.sub(r"\\\n\s*", " ", unit.read_text())
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service" and "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def exposure(unit: Path) -> float:
    proc = subprocess.run(
        [str(ANALYZE), "security", "--offline=true", str(unit)], capture_output=True, text=True, timeout=60
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout + proc.stderr)
    assert match, proc.stdout + proc.stderr
    return float(match.group(1))


@needs_analyze
@pytest.mark.parametrize("unit", [AGENT_UNIT, HUB_UNIT], ids=lambda u: u.name)
def test_exposure_is_at_most_two(unit: Path, tmp_path: Path) -> None:
    score = exposure(unit)
    assert score <= MAX_EXPOSURE, f"{unit.name}: systemd-analyze security rates it {score}"
    # the score reacts to the unit: without its sandbox the same unit rates far worse
    bare = tmp_path / unit.name
    keep = ("Type", "User", "Group", "ExecStart", "EnvironmentFile", "Restart")
    bare.write_text("[Service]\n" + "".join(f"{k}={v}\n" for k, vs in settings(unit).items() if k in keep for v in vs))
    assert exposure(bare) > 5.0


@needs_analyze
@pytest.mark.parametrize(
    ("unit", "name", "exe"),
    [(AGENT_UNIT, "station-edge.service", "edge-agent"), (HUB_UNIT, "edge-hub@hub-1.service", "edge-hub")],
    ids=["station-edge", "edge-hub@"],
)
def test_verify_is_clean(unit: Path, name: str, exe: str, tmp_path: Path) -> None:
    """Verified as installed, except that ExecStart names this checkout's venv (verify checks that
    the program exists, and /opt/station-edge/venv does not here)."""
    text = unit.read_text().replace(f"/opt/station-edge/venv/bin/{exe}", str(VENV_BIN / exe))
    assert str(VENV_BIN / exe) in text
    (tmp_path / name).write_text(text)
    proc = subprocess.run([str(ANALYZE), "verify", str(tmp_path / name)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


@pytest.mark.parametrize("unit", [AGENT_UNIT, HUB_UNIT], ids=lambda u: u.name)
def test_operator_exit_codes_are_not_restarted(unit: Path) -> None:
    s = settings(unit)
    assert s["Restart"] == ["on-failure"]
    [line] = s["RestartPreventExitStatus"]
    codes = {int(c) for c in line.split()}
    assert codes == set(NO_RESTART_EXIT_CODES) and EXIT_FAILURE not in codes


def test_agent_unit_has_what_the_issue_asks() -> None:
    s = settings(AGENT_UNIT)
    one = {k: v[-1] for k, v in s.items()}
    assert one["Type"] == "notify" and int(one["WatchdogSec"]) > 0
    assert one["User"] == "station-edge" and "dialout" in one["SupplementaryGroups"].split()
    assert one["StateDirectory"] == "station-edge" and one["ConfigurationDirectory"] == "station-edge"
    assert one["CapabilityBoundingSet"] == "" and one["NoNewPrivileges"] == "yes"
    assert one["ProtectSystem"] == "strict" and one["ProtectHome"] == "yes" and one["PrivateTmp"] == "yes"
    assert s["SystemCallFilter"][0] == "@system-service"
    assert set(one["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert one["DevicePolicy"] == "closed" and "char-ttyUSB rw" in s["DeviceAllow"]


def test_sysusers_and_tmpfiles_apply_to_a_scratch_root(tmp_path: Path) -> None:
    sysusers, tmpfiles = shutil.which("systemd-sysusers"), shutil.which("systemd-tmpfiles")
    if sysusers is None or tmpfiles is None or os.geteuid() != 0:
        pytest.skip("needs systemd-sysusers and systemd-tmpfiles, run as root (chown to the new users)")
    (tmp_path / "etc").mkdir()
    users = sorted(str(p) for p in UNITS.glob("*.sysusers.conf"))
    dirs = sorted(str(p) for p in UNITS.glob("*.tmpfiles.conf"))
    done = subprocess.run([sysusers, f"--root={tmp_path}", *users], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    passwd = {line.split(":")[0]: line.split(":") for line in (tmp_path / "etc/passwd").read_text().splitlines()}
    groups = {line.split(":")[0]: line.split(":") for line in (tmp_path / "etc/group").read_text().splitlines()}
    assert passwd["station-edge"][6] == "/usr/sbin/nologin" and "station-edge-hub" in passwd
    assert "station-edge" in groups["dialout"][3].split(",") and "station-edge" in groups["bluetooth"][3].split(",")
    done = subprocess.run(
        [tmpfiles, f"--root={tmp_path}", "--create", *dirs], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    uid = int(passwd["station-edge"][2])
    state, etc = (tmp_path / "var/lib/station-edge").stat(), (tmp_path / "etc/station-edge").stat()
    assert (state.st_uid, state.st_mode & 0o777) == (uid, 0o700)
    assert (etc.st_uid, etc.st_gid, etc.st_mode & 0o777) == (0, int(groups["station-edge"][2]), 0o750)


def test_agent_runs_under_the_unit() -> None:
    if Path("/proc/1/comm").read_text().strip() != "systemd" or shutil.which("systemd-run") is None:
        pytest.skip(
            f"PID 1 is {Path('/proc/1/comm').read_text().strip()!r}, not systemd: systemd-run cannot start a "
            "transient unit here; test_agent_runs_under_the_equivalent_sandbox applies what can be applied"
        )
    props = [f"--property={k}={v}" for k, vs in settings(AGENT_UNIT).items() for v in vs if k not in ("ExecStart",)]
    proc = subprocess.run(
        ["systemd-run", "--wait", "--collect", "--quiet", *props, str(VENV_BIN / "edge-agent"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr


# -- the equivalent sandbox -------------------------------------------------------------------


def syscall_groups() -> dict[str, list[str]]:
    text = subprocess.run([str(ANALYZE), "syscall-filter"], capture_output=True, text=True, timeout=60).stdout
    groups: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("@"):
            current = line.strip()
            groups[current] = []
        elif line.strip() and not line.strip().startswith("#") and current:
            groups[current].append(line.strip())
    return groups


def expand(names: list[str], groups: dict[str, list[str]]) -> set[str]:
    out: set[str] = set()
    for name in names:
        out |= expand(groups[name], groups) if name.startswith("@") else {name}
    return out


def sandbox_spec(tmp_path: Path, state: Path, config_dir: Path) -> Path:
    """The unit's SystemCallFilter= lines (an allow list, then ``~`` deny lists) and
    RestrictAddressFamilies=, turned into what sandbox_exec.py applies."""
    s = settings(AGENT_UNIT)
    groups = syscall_groups()
    allow: set[str] = expand(["@default"], groups)
    for line in s["SystemCallFilter"]:
        if line.startswith("~"):
            allow -= expand(line[1:].split(), groups)
        else:
            allow |= expand(line.split(), groups)
    assert "execve" in allow and "mount" not in allow and "sched_setaffinity" not in allow
    spec = {
        "state": str(state),
        "config_dir": str(config_dir),
        "uid": SANDBOX_UID,
        "gid": SANDBOX_UID,
        # ProtectHome=yes empties /home and /root; a development interpreter living there (pyenv in
        # /root) is left visible, read-only, as ProtectHome=read-only would (on a gateway Python
        # is /usr/bin/python3)
        "hide": [h for h in ("/home", "/root") if not str(Path(sys.base_prefix).resolve()).startswith(h + "/")],
        "keep": _installation_in_tmp(),
        "allow": sorted(allow),
        "families": s["RestrictAddressFamilies"][-1].split(),
        "mdwe": s["MemoryDenyWriteExecute"] == ["yes"],
    }
    path = tmp_path / "sandbox.json"
    path.write_text(json.dumps(spec))
    return path


def _installation_in_tmp() -> list[str]:
    """The checkout and the interpreter's prefixes that live under /tmp or /var/tmp, which the
    private /tmp would hide (a CI clone in /tmp); on a gateway the agent lives in /opt."""
    repo = Path(__file__).resolve().parents[2]
    paths = {str(p) for p in (repo, Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve())}
    under_tmp = sorted(p for p in paths if p.startswith(("/tmp/", "/var/tmp/")))
    return [p for p in under_tmp if not any(p != q and p.startswith(q + "/") for q in under_tmp)]


def _interpreter_reachable_by_others() -> bool:
    """Can an unprivileged user execute this interpreter (every directory above it searchable)?"""
    path = Path(sys.base_prefix).resolve()
    return all(p.stat().st_mode & 0o001 for p in (path, *path.parents))


# User=: "nobody" when it can run this interpreter. A development interpreter under /root (pyenv,
# mode 0700) cannot be run by another user, so there the sandbox stays uid 0 with every
# capability gone (empty bounding set, no new privileges): no DAC override, read-only mounts
# binding root as well. On a gateway, Python is /usr/bin/python3 and the agent is its own user.
SANDBOX_UID = 65534 if _interpreter_reachable_by_others() else 0


def sandboxed(spec: Path, *argv: str) -> list[str]:
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        sys.executable,
        str(Path(__file__).parent / "sandbox_exec.py"),
        str(spec),
        "--",
        *argv,
    ]


PROBE = r"""
import errno, mmap, os, socket, sys
def outcome(fn):
    try:
        fn()
        return "allowed"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
state, config = sys.argv[1], sys.argv[2]
res = {
    "uid": os.getuid(),
    "caps": [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff")][0],
    "bounding": [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapBnd")][0],
    "no_new_privs": [l.split()[1] for l in open("/proc/self/status") if l.startswith("NoNewPrivs")][0],
    "write_state": outcome(lambda: open(os.path.join(state, "probe"), "w").close()),
    "write_config": outcome(lambda: open(os.path.join(config, "probe"), "w").close()),
    "write_usr": outcome(lambda: open("/usr/probe", "w").close()),
    "inet": outcome(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()),
    "unix": outcome(lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).close()),
    "netlink": outcome(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0).close()),
    "affinity": outcome(lambda: os.sched_setaffinity(0, os.sched_getaffinity(0))),
    "wx_mmap": outcome(lambda: mmap.mmap(-1, 4096, prot=mmap.PROT_WRITE | mmap.PROT_EXEC)),
    "rw_mmap": outcome(lambda: mmap.mmap(-1, 4096, prot=mmap.PROT_WRITE | mmap.PROT_READ)),
    "tmp_is_private": not os.path.exists(os.path.join(os.path.dirname(state), "outside-marker")),
}
print(__import__("json").dumps(res))
"""


def _sandbox_available() -> str | None:
    if os.geteuid() != 0:
        return "needs root (a mount namespace and a switch to another user)"
    if ANALYZE is None or shutil.which("unshare") is None:
        return "needs systemd-analyze and unshare"
    if subprocess.run(["unshare", "--mount", "true"], capture_output=True, timeout=30).returncode != 0:
        return "this machine does not allow a mount namespace (unshare --mount)"
    return None


def _dirs(tmp_path: Path) -> tuple[Path, Path]:
    state, etc = tmp_path / "state", tmp_path / "etc"
    state.mkdir(mode=0o700)
    etc.mkdir()
    os.chown(state, SANDBOX_UID, SANDBOX_UID)
    (tmp_path / "outside-marker").write_text("")
    tmp_path.chmod(0o755)
    return state, etc


def test_the_equivalent_sandbox_is_in_force(tmp_path: Path) -> None:
    why = _sandbox_available()
    if why:
        pytest.skip(why)
    state, etc = _dirs(tmp_path)
    spec = sandbox_spec(tmp_path, state, etc)
    (tmp_path / "probe.py").write_text(PROBE)
    probe = etc / "probe.py"
    probe.write_text(PROBE)
    proc = subprocess.run(
        sandboxed(spec, sys.executable, str(probe), str(state), str(etc)), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got == {
        "uid": SANDBOX_UID,
        "caps": "0000000000000000",  # CapabilityBoundingSet= (empty): none effective, none possible
        "bounding": "0000000000000000",
        "no_new_privs": "1",  # NoNewPrivileges=yes
        "write_state": "allowed",
        "write_config": "EROFS",
        "write_usr": "EROFS",
        "inet": "allowed",
        "unix": "allowed",
        "netlink": "EPERM",  # RestrictAddressFamilies=
        "affinity": "EPERM",  # SystemCallFilter=~@resources
        "wx_mmap": "EPERM",  # MemoryDenyWriteExecute=
        "rw_mmap": "allowed",
        "tmp_is_private": True,  # PrivateTmp=
    }


def test_agent_runs_under_the_equivalent_sandbox(tmp_path: Path) -> None:
    why = _sandbox_available()
    if why:
        pytest.skip(why)
    state, etc = _dirs(tmp_path)
    spec = sandbox_spec(tmp_path, state, etc)
    config = etc / "agent.toml"
    config.write_text(
        f'version = 1\n[gateway]\nid = "gw-sandbox"\nprovince = "p01"\nstate_dir = "{state}"\n'
        "[scheduler]\nstatus_interval_s = 1\n"
        '[[devices]]\nid = "oxi-1"\nformat = "masimo-ascii"\ntransport = "simulated"\nspeed = 20.0\n'
        '[[devices]]\nid = "monitor-1"\nformat = "hl7v2"\ntransport = "simulated"\nscenario = "fever"\nspeed = 20.0\n'
    )
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    proc = subprocess.Popen(
        sandboxed(spec, str(VENV_BIN / "edge-agent"), "run", "--config", str(config)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    status: dict[str, object] = {}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status = json.loads((state / "status.json").read_text())
            except (OSError, ValueError):
                status = {}
            store = status.get("store") if isinstance(status, dict) else None
            if isinstance(store, dict) and int(store.get("stored_total", 0) or 0) >= 20:
                break
            time.sleep(0.3)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-3000:]
    assert "event=" in err and "Traceback" not in err, err[-3000:]
    store = status.get("store")
    assert isinstance(store, dict) and int(store.get("stored_total", 0) or 0) >= 20, status
    scoring = status.get("scoring")
    assert isinstance(scoring, dict) and scoring.get("available") is True, scoring  # ONNX Runtime under MDWE
    assert (state / "buffer.sqlite3").exists() and not (etc / "buffer.sqlite3").exists()
