"""Which machines a fleet is: `--hosts h1,h2` or `--inventory FILE`, read into (label, lane) pairs.

An inventory is one host per line, or an Ansible inventory (INI or YAML) whose hosts are taken
from every group; `ansible_host`, `ansible_user` and `ansible_port` become the ssh destination
and the inventory's name stays the host's label (its `host` column and run directory).
Ranges such as `web[01:03]` and `db-[a:c]` expand as Ansible expands them. Group variables,
`:vars` and `:children` sections name no new host and are skipped.

A member is a lane name (`ssh:[user@]host[:port]`, `vm:6.1` for a guest kept up, `host`) or a
bare ssh destination, which means `ssh:` + it. Pure: nothing here connects anywhere.
"""

from __future__ import annotations

import re
import shlex
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError, UsageError

_RANGE = re.compile(r"\[([0-9]+|[a-z]):([0-9]+|[a-z])(?::([0-9]+))?\]")
_LANE_PREFIXES = ("ssh:", "vm:")
_LANE_NAMES = ("host", "vm")


@dataclass(frozen=True)
class Member:
    """One machine of a fleet: its label (as the user wrote it) and the lane that reaches it."""

    label: str
    lane: str


def member(word: str) -> Member:
    """`lab-box` -> Member('lab-box', 'ssh:lab-box'); a lane name stays as it is."""
    word = word.strip()
    if word in _LANE_NAMES or word.startswith(_LANE_PREFIXES):
        return Member(word, word)
    return Member(word, f"ssh:{word}")


def from_list(words: Iterable[str]) -> list[Member]:
    """The members `--hosts a,b` (or hosts=['a', 'b']) names, in order, checked."""
    return checked([member(w) for w in words], "the host list")


def checked(members: Sequence[Member], where: str) -> list[Member]:
    """No fleet is empty, names no host twice, or holds a destination ssh cannot take."""
    from harness.lanes.remote import parse_destination

    if not members:
        raise UsageError(f"{where} names no host", "name at least one, e.g. --hosts lab-a,lab-b")
    seen: dict[str, str] = {}
    for m in members:
        if not m.label or any(c.isspace() or c == "\0" for c in m.label):
            raise UsageError(f"{where}: {m.label!r:.60} is not a host name",
                             "write [user@]host[:port], one per host")
        if m.lane.startswith("ssh:"):
            try:
                parse_destination(m.lane.removeprefix("ssh:"))
            except HarnessError as err:  # RemoteError: the same words, as a usage error
                raise UsageError(f"{where}: {err.cause}", err.fix) from None
        if m.lane in seen:
            both = m.label if seen[m.lane] == m.label else f"{seen[m.lane]} and {m.label}"
            raise UsageError(f"{where} names {m.lane} twice ({both})", "name each host once")
        seen[m.lane] = m.label
    return list(members)


def read(path: Path | str) -> list[Member]:
    """The members of an inventory file: plain lines or Ansible INI, or Ansible YAML."""
    path = Path(path)
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise UsageError(f"inventory {path} is not text",
                         "pass a file with one host per line, or an Ansible inventory") from None
    except OSError as err:
        raise UsageError(f"cannot read inventory {path}: {err.strerror or err}",
                         "pass an existing, readable file") from None
    where = f"inventory {path}"
    members = _yaml(text, where) if _looks_yaml(text) else _ini(text, where)
    return checked(members, where)


def _looks_yaml(text: str) -> bool:
    """YAML inventories start with `---` or a top-level `group:` mapping; INI and plain lists
    never end their first line with a colon."""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        return stripped == "---" or bool(re.fullmatch(r"[\w.-]+:\s*(\{\s*\})?", stripped))
    return False


def expand(pattern: str, where: str = "the inventory") -> list[str]:
    """`web[01:03].lab` -> web01.lab, web02.lab, web03.lab (Ansible's host ranges)."""
    m = _RANGE.search(pattern)
    if m is None:
        return [pattern]
    lo, hi, step_text = m.group(1), m.group(2), m.group(3)
    step = int(step_text) if step_text else 1
    head, tail = pattern[: m.start()], pattern[m.end():]
    if lo.isdigit() != hi.isdigit() or step < 1:
        raise UsageError(f"{where}: cannot expand the range in {pattern!r}",
                         "write [01:10] or [a:f] (with an optional :step)")
    if lo.isdigit():
        width = len(lo) if lo.startswith("0") else 0
        words = [str(i).zfill(width) for i in range(int(lo), int(hi) + 1, step)]
    else:
        letters = string.ascii_lowercase
        words = list(letters[letters.index(lo): letters.index(hi) + 1: step])
    if not words:
        raise UsageError(f"{where}: the range in {pattern!r} is empty",
                         "write the lower bound first")
    return [name for w in words for name in expand(head + w + tail, where)]


def _with_vars(name: str, variables: Mapping[str, Any]) -> Member:
    """An inventory host and its connection variables -> Member(label=name, ssh destination)."""
    host = str(variables.get("ansible_host") or variables.get("ansible_ssh_host") or name)
    user = variables.get("ansible_user") or variables.get("ansible_ssh_user")
    port = variables.get("ansible_port") or variables.get("ansible_ssh_port")
    if ":" in host and not host.startswith("["):  # an IPv6 address
        host = f"[{host}]" if port else host
    if name.startswith(_LANE_PREFIXES) or name in _LANE_NAMES:
        return Member(name, name)
    destination = f"{user}@{host}" if user else host
    if port:
        destination += f":{port}"
    return Member(name, f"ssh:{destination}")


def _ini(text: str, where: str) -> list[Member]:
    """Plain host lines, or Ansible INI: `[group]` sections of `host key=value ...` lines."""
    members: list[Member] = []
    known: set[str] = set()
    section = ""
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise UsageError(f"{where} line {n}: {line[:60]!r} opens a section it does not "
                                 "close", "write [group]")
            section = line[1:-1]
            continue
        if section.endswith((":vars", ":children")):
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError as err:
            raise UsageError(f"{where} line {n}: {err}", "balance its quotes") from None
        name, variables = words[0], {}
        for word in words[1:]:
            key, eq, value = word.partition("=")
            if not eq:
                raise UsageError(f"{where} line {n}: {word[:60]!r} is not key=value",
                                 "write one host per line, then its variables as key=value")
            variables[key] = value
        port_in_name = re.fullmatch(r"([^\[\]:]+):(\d+)", name)  # Ansible's `host:port`
        if port_in_name and "ansible_port" not in variables:
            name, variables["ansible_port"] = port_in_name.group(1), port_in_name.group(2)
        for each in expand(name, f"{where} line {n}"):
            if each not in known:  # a host in two groups is one host
                known.add(each)
                members.append(_with_vars(each, variables))
    return members


def _yaml(text: str, where: str) -> list[Member]:
    """Ansible YAML: groups (under `all` or at the top) with `hosts:` and `children:`."""
    try:
        import yaml
    except ImportError:
        raise UsageError(f"{where} is YAML, and PyYAML is not installed",
                         "pip install pyyaml (a dependency of ktrace-harness)") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark is not None else ""
        raise UsageError(f"{where}{at} is not valid YAML ({getattr(err, 'problem', err)})",
                         "fix it, or write one host per line") from None
    if not isinstance(data, dict):
        raise UsageError(f"{where} is YAML but not an inventory (no group mapping at the top)",
                         "write `all: {hosts: {HOST: {}}}`, or one host per line")
    members: list[Member] = []
    known: set[str] = set()

    def group(name: str, body: Any) -> None:
        if body is None:
            return
        if not isinstance(body, dict):
            raise UsageError(f"{where}: group {name!r} is not a mapping",
                             "give it `hosts:` and/or `children:`")
        hosts = body.get("hosts") or {}
        if not isinstance(hosts, dict):
            raise UsageError(f"{where}: the hosts of group {name!r} are not a mapping",
                             "write `hosts: {HOST: {ansible_host: ...}}`")
        for host, variables in hosts.items():
            if variables is not None and not isinstance(variables, dict):
                raise UsageError(f"{where}: host {host!r} has variables that are no mapping",
                                 "write `HOST: {ansible_port: 22}` or `HOST:`")
            for each in expand(str(host), where):
                if each not in known:
                    known.add(each)
                    members.append(_with_vars(each, variables or {}))
        children = body.get("children") or {}
        if not isinstance(children, dict):
            raise UsageError(f"{where}: the children of group {name!r} are not a mapping",
                             "write `children: {GROUP: {hosts: ...}}`")
        for child, child_body in children.items():
            group(str(child), child_body)

    for name, body in data.items():
        group(str(name), body)
    return members


def directory_names(members: Sequence[Member]) -> dict[str, str]:
    """label -> a run directory name for it (a file-system-safe, unique form of the label)."""
    names: dict[str, str] = {}
    used: set[str] = set()
    for m in members:
        base = re.sub(r"[^A-Za-z0-9._@-]", "_", m.label).strip(".") or "host"
        name, n = base, 1
        while name in used:
            n += 1
            name = f"{base}-{n}"
        used.add(name)
        names[m.label] = name
    return names
