"""Who is in a fleet (harness.lanes.inventory) and how its tables merge, without a machine: host
lists, plain and Ansible INI/YAML inventories (as Ansible documents them), the API's argument
checks, and the merged tables' host column."""

from __future__ import annotations

from pathlib import Path

import pytest

import harness
from harness.api.fleet import merge_tables
from harness.errors import UsageError
from harness.lanes.inventory import Member, directory_names, expand, from_list, member, read
from harness.output.columns import Table

PROBE = "tracepoint:syscalls:sys_enter_getppid"


def test_a_host_is_an_ssh_destination_unless_it_names_a_lane() -> None:
    assert member("lab-a") == Member("lab-a", "ssh:lab-a")
    assert member("root@10.0.0.7:2222") == Member("root@10.0.0.7:2222", "ssh:root@10.0.0.7:2222")
    assert member("ssh:lab-b") == Member("ssh:lab-b", "ssh:lab-b")
    assert member("vm:6.1") == Member("vm:6.1", "vm:6.1")
    assert member("host") == Member("host", "host")


@pytest.mark.parametrize(("words", "said"), [
    ([], "names no host"),
    (["a", "ssh:a"], "names ssh:a twice (a and ssh:a)"),
    (["a", "a"], "names ssh:a twice (a)"),
    (["a b"], "is not a host name"),
    (["ssh:"], "cannot read the ssh destination"),
    (["x@"], "cannot read the ssh destination"),
])
def test_a_bad_host_list_is_a_usage_error(words: list[str], said: str) -> None:
    with pytest.raises(UsageError, match=said.replace("(", r"\(").replace(")", r"\)")):
        from_list(words)


def test_plain_lines_and_ansible_ini(tmp_path: Path) -> None:
    inv = tmp_path / "hosts.ini"
    inv.write_text(
        "# a comment\n"
        "mail.example.com\n"
        "\n"
        "[webservers]\n"
        "foo.example.com\n"
        "bar.example.com ansible_port=5555 ansible_user=admin\n"
        "web[01:03].example.com\n"
        "\n"
        "[dbservers]\n"
        "db-[a:c].example.com\n"
        "foo.example.com   # in two groups: one host\n"
        "jumper ansible_host=192.0.2.50 ansible_port=2222\n"
        "badwolf.example.com:5309\n"
        "\n"
        "[webservers:vars]\n"
        "ntp_server=ntp.example.com\n"
        "\n"
        "[all_servers:children]\n"
        "webservers\n"
        "dbservers\n"
    )
    got = read(inv)
    assert [m.label for m in got] == [
        "mail.example.com", "foo.example.com", "bar.example.com", "web01.example.com",
        "web02.example.com", "web03.example.com", "db-a.example.com", "db-b.example.com",
        "db-c.example.com", "jumper", "badwolf.example.com",
    ]
    lanes = {m.label: m.lane for m in got}
    assert lanes["bar.example.com"] == "ssh:admin@bar.example.com:5555"
    assert lanes["jumper"] == "ssh:192.0.2.50:2222"  # the label stays the inventory's name
    assert lanes["badwolf.example.com"] == "ssh:badwolf.example.com:5309"
    assert lanes["mail.example.com"] == "ssh:mail.example.com"


def test_ansible_yaml(tmp_path: Path) -> None:
    pytest.importorskip("yaml", reason="PyYAML is a dependency: re-run scripts/setup.sh")
    inv = tmp_path / "hosts.yml"
    inv.write_text(
        "all:\n"
        "  hosts:\n"
        "    mail.example.com:\n"
        "  children:\n"
        "    webservers:\n"
        "      hosts:\n"
        "        foo.example.com:\n"
        "        bar.example.com:\n"
        "          ansible_user: admin\n"
        "          ansible_port: 5555\n"
        "    dbservers:\n"
        "      hosts:\n"
        "        one.example.com:\n"
        "          ansible_host: 192.0.2.5\n"
        "        foo.example.com:\n"
        "        www[1:2].example.com:\n"
        "      vars:\n"
        "        ntp_server: ntp.example.com\n"
    )
    got = read(inv)
    assert [m.label for m in got] == [
        "mail.example.com", "foo.example.com", "bar.example.com", "one.example.com",
        "www1.example.com", "www2.example.com",
    ]
    lanes = {m.label: m.lane for m in got}
    assert lanes["bar.example.com"] == "ssh:admin@bar.example.com:5555"
    assert lanes["one.example.com"] == "ssh:192.0.2.5"


@pytest.mark.parametrize(("text", "said"), [
    ("", "names no host"),
    ("[web]\n[web:vars]\nx=1\n", "names no host"),
    ("[web\nh1\n", "line 1: '\\[web' opens a section"),
    ("h1 notkeyvalue\n", "line 1: 'notkeyvalue' is not key=value"),
    ("web[3:1]\n", "the range in 'web\\[3:1\\]' is empty"),
    ("web[1:c]\n", "cannot expand the range"),
    ("h1 a='x\n", "line 1: No closing quotation"),
    ("all:\n  hosts: [a, b\n", "is not valid YAML"),
    ("all:\n  hosts: [a, b]\n", "the hosts of group 'all' are not a mapping"),
    ("---\n- a\n", "not an inventory"),
])
def test_a_bad_inventory_is_one_line(tmp_path: Path, text: str, said: str) -> None:
    pytest.importorskip("yaml", reason="PyYAML is a dependency: re-run scripts/setup.sh")
    inv = tmp_path / "inv"
    inv.write_text(text)
    with pytest.raises(UsageError, match=said) as caught:
        read(inv)
    assert "\n" not in str(caught.value)


def test_ranges_expand_as_ansible_expands_them() -> None:
    assert expand("web[08:10].lab") == ["web08.lab", "web09.lab", "web10.lab"]
    assert expand("n[1:5:2]") == ["n1", "n3", "n5"]
    assert expand("r[a:b]-[1:2]") == ["ra-1", "ra-2", "rb-1", "rb-2"]


def test_each_host_gets_its_own_directory_name() -> None:
    names = directory_names(from_list(["root@lab:2222", "root_lab_2222", "vm:6.1"]))
    assert names == {"root@lab:2222": "root@lab_2222", "root_lab_2222": "root_lab_2222",
                     "vm:6.1": "vm_6.1"}
    assert len(set(directory_names(from_list(["a:1", "a_1"])).values())) == 2


def test_merged_tables_lead_with_the_host_and_keep_every_row() -> None:
    a = {"@count": Table({"comm": ["x", "y"], "value": [3, 4]})}
    b = {"@count": Table({"printing": [1, 2], "t_s": [0.5, 1.0], "comm": ["x", "x"],
                          "value": [1, 2]}),
         "@other": Table({"value": [9]})}
    merged = merge_tables({"h1": a, "h2": b})
    count = merged["@count"]
    assert count.columns == ["host", "comm", "value", "printing", "t_s"]
    assert count.data["host"] == ["h1", "h1", "h2", "h2"]
    assert count.data["value"] == [3, 4, 1, 2]
    assert count.data["printing"] == [None, None, 1, 2]
    assert merged["@other"].data == {"host": ["h2"], "value": [9]}


@pytest.mark.parametrize(("kwargs", "said"), [
    ({}, "takes hosts=\\[...\\] or inventory=FILE"),
    ({"hosts": ["a"], "inventory": "x"}, "takes hosts=\\[...\\] or inventory=FILE"),
    ({"hosts": "a,b"}, "hosts='a,b' is not a non-empty list of names"),
    ({"hosts": ["a", 5]}, "hosts\\[1\\]=5 is not a non-empty string"),
    ({"hosts": ["a"], "jobs": 0}, "jobs=0 is below 1"),
    ({"hosts": ["a"], "jobs": "2"}, "jobs='2' is not an integer"),
    ({"inventory": 5}, "inventory=5 is not a path"),
    ({"hosts": ["a"], "out": True}, "out=True names no directory"),
    ({"hosts": ["a"], "on_host": 3}, "on_progress=3 is not a function"),
    ({"hosts": ["a"], "timeout": "5s"}, "timeout='5s' is not a number of seconds"),
    ({"hosts": ["a"], "bpftrace": 0.27}, "bpftrace=0.27 is not a release name"),
])
def test_the_fleet_api_checks_its_arguments_before_connecting(kwargs: dict[str, object],
                                                               said: str) -> None:
    with pytest.raises(UsageError, match=said):
        harness.fleet(PROBE, duration=1, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=said):
        harness.fleet_crosscheck("ktrace", **kwargs)  # type: ignore[arg-type]


def test_a_bad_spec_fails_once_before_any_host_is_reached() -> None:
    """ktrace-down is never dialled: the spec is refused first."""
    with pytest.raises(UsageError, match="nothing bounds this run"):
        harness.fleet(PROBE, hosts=["ktrace-down"])
    with pytest.raises(UsageError, match="unknown spec option"):
        harness.fleet(PROBE, hosts=["ktrace-down"], duration=1, nosuch=1)
