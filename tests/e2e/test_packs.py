"""Packs: what `packrun up` installs at start, `packrun pack install` of a
good pack, and every kind of bad pack (rejected with a clear message,
nothing stored)."""

import json
import os
import re
import shutil
from pathlib import Path

import pytest



# --- packrun up and the example packs ---------------------------------------

def test_health_ok(up):
    status, body = up.get("/health")
    assert status == 200
    assert body["status"] == "ok"
    assert body["database"] == "ok"


def test_example_packs_installed_at_start(up):
    refs = up.pack_refs()
    assert "hello" in refs and "sysinfo" in refs, refs

    status, pack = up.get("/api/v1/packs/hello")
    assert status == 200, pack
    assert pack["version"] == "1.0.0"
    assert sorted(pack["actions"]) == ["hello.fail", "hello.greet", "hello.noop", "hello.shout"]

    r = up.cli("pack", "list")
    assert r.returncode == 0, r.stderr
    assert re.search(r"^hello\b", r.stdout, re.M), r.stdout
    assert re.search(r"^sysinfo\b", r.stdout, re.M), r.stdout


def test_pack_list_json(up):
    r = up.cli("pack", "list", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    packs = doc["packs"] if isinstance(doc, dict) else doc
    assert {"hello", "sysinfo"} <= {p["ref"] for p in packs}


def test_action_list_of_a_pack(up):
    r = up.cli("action", "list", "hello")
    assert r.returncode == 0, r.stderr
    for ref in ("hello.greet", "hello.shout", "hello.noop", "hello.fail"):
        assert ref in r.stdout, r.stdout
    assert "sysinfo." not in r.stdout, "action list hello shows another pack's actions"

    status, body = up.get("/api/v1/actions?pack=hello")
    assert status == 200
    assert sorted(a["ref"] for a in body["actions"]) == \
        ["hello.fail", "hello.greet", "hello.noop", "hello.shout"]


def test_action_show_lists_parameters(up):
    r = up.cli("action", "show", "hello.greet")
    assert r.returncode == 0, r.stderr
    assert "hello.greet" in r.stdout
    assert re.search(r"\bname\b", r.stdout), r.stdout          # the parameter
    assert "string" in r.stdout, r.stdout                     # its type
    assert "world" in r.stdout, r.stdout                      # its default

    r = up.cli("action", "show", "hello.greet", "--json")
    assert r.returncode == 0, r.stderr
    action = json.loads(r.stdout)
    assert action["ref"] == "hello.greet"
    assert action["runner_type"] == "python"
    assert action["parameters"]["name"]["default"] == "world"

    status, body = up.get("/api/v1/actions/hello.greet")
    assert status == 200
    assert body["parameters"]["name"]["type"] == "string"
    assert body["output_format"] == "json"


def test_action_show_unknown(up):
    r = up.cli("action", "show", "hello.nope")
    assert r.returncode != 0
    assert "hello.nope" in r.stderr


# --- installing a good pack --------------------------------------------------

def write_mini_pack(dst, version, word):
    dst = Path(dst)
    (dst / "actions").mkdir(parents=True, exist_ok=True)
    (dst / "pack.yaml").write_text(
        f'ref: mini\nlabel: Mini\ndescription: A pack made by a test.\nversion: "{version}"\n')
    (dst / "actions" / "hi.yaml").write_text(
        "ref: mini.hi\nlabel: Hi\ndescription: Say which version this is.\n"
        "runner_type: shell\nentry_point: hi.sh\n")
    (dst / "actions" / "hi.sh").write_text(f"#!/bin/bash\necho 'hi from mini {word}'\n")
    return dst


def test_pack_install_copies_into_data_folder(start_up, tmp_path):
    d = start_up(register_e2e=False)
    api = d.api
    src = write_mini_pack(tmp_path / "src" / "mini", "1.0.0", "v1")

    r = api.cli("pack", "install", src)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "mini" in r.stdout

    status, pack = api.get("/api/v1/packs/mini")
    assert status == 200, pack
    assert pack["version"] == "1.0.0"
    assert pack["actions"] == ["mini.hi"]
    pack_dir = Path(pack["dir"]).resolve()
    assert pack_dir.is_relative_to(d.data_dir.resolve()), \
        f"pack dir {pack_dir} is not under the data folder {d.data_dir}"
    assert (pack_dir / "actions" / "hi.sh").is_file()

    r = api.cli("pack", "list")
    assert re.search(r"^mini\b", r.stdout, re.M), r.stdout

    # The source folder is not needed any more.
    shutil.rmtree(tmp_path / "src")
    rec = api.run("mini.hi")
    assert rec["status"] == "succeeded", rec
    assert rec["result"]["stdout"] == "hi from mini v1\n"

    # Re-installing a changed pack updates it.
    src = write_mini_pack(tmp_path / "src2" / "mini", "1.1.0", "v2")
    r = api.cli("pack", "install", src)
    assert r.returncode == 0, r.stdout + r.stderr
    status, pack = api.get("/api/v1/packs/mini")
    assert pack["version"] == "1.1.0"
    rec = api.run("mini.hi")
    assert rec["status"] == "succeeded", rec
    assert rec["result"]["stdout"] == "hi from mini v2\n"
    assert api.pack_refs().count("mini") == 1


def test_pack_show_and_remove(start_up, tmp_path):
    d = start_up(register_e2e=False)
    api = d.api
    src = write_mini_pack(tmp_path / "mini", "2.0.0", "x")
    r = api.cli("pack", "install", src)
    assert r.returncode == 0, r.stderr

    r = api.cli("pack", "show", "mini")
    assert r.returncode == 0, r.stderr
    assert "2.0.0" in r.stdout and "mini.hi" in r.stdout, r.stdout

    r = api.cli("pack", "remove", "mini")
    assert r.returncode == 0, r.stderr
    assert "mini" not in api.pack_refs()
    status, body = api.get("/api/v1/actions/mini.hi")
    assert status == 404, body


# --- bad packs ---------------------------------------------------------------

GOOD_PACK_YAML = {
    "ref": "badpack",
    "label": "Bad pack",
    "description": "A pack made to fail validation.",
    "version": '"1.0.0"',
}


def pack_yaml_text(fields):
    return "".join(f"{k}: {v}\n" for k, v in fields.items())


def make_pack(root, pack_fields=None, actions=None, files=None):
    """A pack folder under root: pack.yaml from pack_fields (None: no
    pack.yaml), actions/NAME.yaml from actions {name: text}, plus files
    {relative path: text}. By default one good action, badpack.ok."""
    root = Path(root)
    (root / "actions").mkdir(parents=True)
    if pack_fields is not None:
        (root / "pack.yaml").write_text(pack_yaml_text(pack_fields))
    if actions is None:
        actions = {"ok": action_yaml("badpack.ok", "ok.sh")}
    for name, text in actions.items():
        (root / "actions" / f"{name}.yaml").write_text(text)
    (root / "actions" / "ok.sh").write_text("#!/bin/bash\necho ok\n")
    for rel, text in (files or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def action_yaml(ref, entry_point="ok.sh", runner_type="shell"):
    text = f"ref: {ref}\nlabel: An action\ndescription: Does something.\n"
    if runner_type is not None:
        text += f"runner_type: {runner_type}\n"
    if entry_point is not None:
        text += f"entry_point: {entry_point}\n"
    return text


def without(d, key):
    d = dict(d)
    del d[key]
    return d


def with_(d, **kw):
    d = dict(d)
    d.update(kw)
    return d


def case_no_pack_yaml(root):
    make_pack(root, None)
    return "badpack", ["pack.yaml"]


def case_yaml_syntax(root):
    make_pack(root, GOOD_PACK_YAML)
    (root / "pack.yaml").write_text(
        "ref: badpack\n"
        "description: A pack made to fail validation.\n"
        "label: Bad: pack\n"
        "version: \"1.0.0\"\n")
    return "badpack", ["pack.yaml", re.compile(r"line 3\b")]


def case_action_yaml_syntax(root):
    make_pack(root, GOOD_PACK_YAML, actions={
        "ok": action_yaml("badpack.ok"),
        "broken": "ref: badpack.broken\nlabel: Broken\n  description: bad indent: here\n"
                  "entry_point: ok.sh\n",
    })
    return "badpack", ["actions/broken.yaml", re.compile(r"line 3\b")]


def case_missing_field(field):
    def build(root):
        make_pack(root, without(GOOD_PACK_YAML, field))
        return "badpack", ["pack.yaml", field]
    build.__name__ = f"case_missing_{field}"
    return build


def case_bad_ref(ref):
    def build(root):
        make_pack(root, with_(GOOD_PACK_YAML, ref=ref))
        return ref, ["pack.yaml", "ref", ref]
    return build


def case_duplicate_action_refs(root):
    make_pack(root, GOOD_PACK_YAML, actions={
        "one": action_yaml("badpack.same"),
        "two": action_yaml("badpack.same"),
    })
    return "badpack", ["badpack.same", "ref", re.compile(r"actions/(one|two)\.yaml")]


def case_action_missing_field(field):
    def build(root):
        text = "".join(line + "\n" for line in action_yaml("badpack.x").splitlines()
                       if not line.startswith(field + ":"))
        make_pack(root, GOOD_PACK_YAML, actions={"x": text})
        return "badpack", ["actions/x.yaml", field]
    return build


def case_entry_point_not_found(root):
    make_pack(root, GOOD_PACK_YAML, actions={"x": action_yaml("badpack.x", "nothere.sh")})
    return "badpack", ["actions/x.yaml", "entry_point", "nothere.sh"]


def case_entry_point_dotdot(root):
    make_pack(root, GOOD_PACK_YAML, actions={"x": action_yaml("badpack.x", "../pack.yaml")})
    return "badpack", ["actions/x.yaml", "entry_point"]


def case_entry_point_dotdot_deep(root):
    make_pack(root, GOOD_PACK_YAML,
              actions={"x": action_yaml("badpack.x", "../../../../../../etc/passwd")})
    return "badpack", ["actions/x.yaml", "entry_point"]


def case_entry_point_absolute(root):
    make_pack(root, GOOD_PACK_YAML, actions={"x": action_yaml("badpack.x", "/bin/true")})
    return "badpack", ["actions/x.yaml", "entry_point"]


def case_entry_point_symlink_out(root):
    make_pack(root, GOOD_PACK_YAML, actions={"x": action_yaml("badpack.x", "link.sh")})
    outside = root.parent / "outside.sh"
    outside.write_text("#!/bin/bash\necho escaped\n")
    os.symlink(outside, root / "actions" / "link.sh")
    return "badpack", ["actions/x.yaml", "entry_point", "link.sh"]


def case_entry_point_relative_symlink_out(root):
    make_pack(root, GOOD_PACK_YAML, actions={"x": action_yaml("badpack.x", "link.sh")})
    outside = root.parent / "outside.sh"
    outside.write_text("#!/bin/bash\necho escaped\n")
    os.symlink("../../outside.sh", root / "actions" / "link.sh")
    return "badpack", ["actions/x.yaml", "entry_point", "link.sh"]


def case_unknown_runner(root):
    make_pack(root, GOOD_PACK_YAML, actions={"x": action_yaml("badpack.x", runner_type="cobol")})
    return "badpack", ["actions/x.yaml", "runner_type", "cobol"]


BAD_PACKS = [
    case_no_pack_yaml,
    case_yaml_syntax,
    case_action_yaml_syntax,
    case_missing_field("ref"),
    case_missing_field("label"),
    case_missing_field("description"),
    case_missing_field("version"),
    case_bad_ref("BadPack"),
    case_bad_ref("bad.pack"),
    case_duplicate_action_refs,
    case_action_missing_field("entry_point"),
    case_action_missing_field("ref"),
    case_entry_point_not_found,
    case_entry_point_dotdot,
    case_entry_point_dotdot_deep,
    case_entry_point_absolute,
    case_entry_point_symlink_out,
    case_entry_point_relative_symlink_out,
    case_unknown_runner,
]


def assert_mentions(text, needles):
    for n in needles:
        if isinstance(n, re.Pattern):
            assert n.search(text), f"message does not match {n.pattern!r}:\n{text}"
        else:
            assert n in text, f"message does not mention {n!r}:\n{text}"


@pytest.fixture(scope="module")
def bare_up(tmp_path_factory):
    """A packrun up for the bad-pack tests (examples installed, no e2e pack)."""
    from conftest import Launcher, _check_binary
    _check_binary()
    la = Launcher(tmp_path_factory.mktemp("badpacks"))
    try:
        yield la.up(register_e2e=False)
    finally:
        la.close()


def stored_pack_dirs(daemon):
    root = daemon.data_dir / "packs"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


@pytest.mark.parametrize("case", BAD_PACKS, ids=lambda c: c.__name__.replace("case_", ""))
def test_bad_pack_cli(bare_up, tmp_path, case):
    api = bare_up.api
    root = tmp_path / "badpack"
    ref, needles = case(root)
    before_packs = api.get("/api/v1/packs")
    before_dirs = stored_pack_dirs(bare_up)

    r = api.cli("pack", "install", root)
    assert r.returncode != 0, f"bad pack accepted:\n{r.stdout}"
    assert_mentions(r.stderr, needles)
    assert r.stderr.count("\n") < 40, "one clear message expected, got:\n" + r.stderr

    assert api.get("/api/v1/packs") == before_packs, "the pack list changed"
    assert stored_pack_dirs(bare_up) == before_dirs, "files were stored in the data folder"
    status, _ = api.get(f"/api/v1/packs/{ref}")
    assert status == 404


@pytest.mark.parametrize("case", BAD_PACKS, ids=lambda c: c.__name__.replace("case_", ""))
def test_bad_pack_api(bare_up, tmp_path, case):
    api = bare_up.api
    root = tmp_path / "badpack"
    ref, needles = case(root)
    before = api.get("/api/v1/packs")

    status, body = api.post("/api/v1/packs/register", {"path": str(root)})
    assert status == 400, body
    err = body["error"]
    assert err["code"] == "invalid", body
    assert_mentions(err["message"], needles)
    assert api.get("/api/v1/packs") == before


def test_bad_pack_lists_every_problem(bare_up, tmp_path):
    api = bare_up.api
    root = make_pack(tmp_path / "multi", with_(GOOD_PACK_YAML, ref="Multi.Bad"), actions={
        "a": action_yaml("badpack.a", runner_type="cobol"),
        "b": action_yaml("badpack.b", "../escape.sh"),
        "c": action_yaml("badpack.c", entry_point=None),
    })
    before = api.get("/api/v1/packs")

    status, body = api.post("/api/v1/packs/register", {"path": str(root)})
    assert status == 400, body
    problems = body["error"].get("problems")
    assert isinstance(problems, list), body
    text = "\n".join(problems)
    assert len(problems) >= 4, problems
    assert_mentions(text, ["pack.yaml", "actions/a.yaml", "runner_type", "actions/b.yaml",
                           "actions/c.yaml", "entry_point"])
    assert "more problem" in body["error"]["message"], body

    r = api.cli("pack", "install", root)
    assert r.returncode != 0
    assert_mentions(r.stderr, ["pack.yaml", "actions/a.yaml", "actions/b.yaml", "actions/c.yaml"])
    assert api.get("/api/v1/packs") == before


def test_bad_pack_does_not_replace_installed_version(bare_up, tmp_path):
    """A broken new version of an installed pack leaves the old one in place."""
    api = bare_up.api
    good = make_pack(tmp_path / "v1", with_(GOOD_PACK_YAML, ref="keepme"),
                     actions={"ok": action_yaml("keepme.ok")})
    r = api.cli("pack", "install", good)
    assert r.returncode == 0, r.stderr
    before = api.get("/api/v1/packs/keepme")

    bad = make_pack(tmp_path / "v2", with_(GOOD_PACK_YAML, ref="keepme", version='"2.0.0"'),
                    actions={"ok": action_yaml("keepme.ok", runner_type="cobol")})
    r = api.cli("pack", "install", bad)
    assert r.returncode != 0
    assert api.get("/api/v1/packs/keepme") == before
    rec = api.run("keepme.ok")
    assert rec["status"] == "succeeded", rec


def test_pack_install_missing_folder(bare_up, tmp_path):
    r = bare_up.api.cli("pack", "install", tmp_path / "does-not-exist")
    assert r.returncode != 0
    assert "does-not-exist" in r.stderr
