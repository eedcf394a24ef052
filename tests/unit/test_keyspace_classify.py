"""Keyspace.classify is the only parser of keys: total (any string in, a result out) and strict
(a malformed key is reported as such, never acted upon as a near miss)."""

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tfleet.keyspace import HISTORY_SEQUENCE_MAX, VERSION_MAX, InvalidName, Keyspace, ParsedKey, Section

KS = Keyspace()
P = ParsedKey

names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,20}(\.[A-Za-z0-9_-]{1,5})?", fullmatch=True)
prefixes = st.lists(st.from_regex(r"[A-Za-z0-9._-]{1,8}", fullmatch=True), min_size=1, max_size=3).map(lambda s: "/" + "/".join(s))
keyspaces = prefixes.filter(lambda p: "/.." not in p).map(Keyspace)


@pytest.mark.parametrize(
    "key, expected",
    [
        ("/tfleet/hosts/h1", P(Section.HOSTS, host="h1")),
        ("/tfleet/assignments/h1/resnet", P(Section.ASSIGNMENTS, host="h1", model="resnet")),
        ("/tfleet/status/h1/resnet", P(Section.STATUS, host="h1", model="resnet")),
        ("/tfleet/models/resnet", P(Section.MODELS, model="resnet")),
        ("/tfleet/versions/resnet/3", P(Section.VERSIONS, model="resnet", version=3)),
        ("/tfleet/history/resnet/000000000012", P(Section.HISTORY, model="resnet", sequence=12)),
        ("/tfleet/historycursor", P(Section.HISTORYCURSOR)),
        ("/tfleet/modelstatus/resnet", P(Section.MODELSTATUS, model="resnet")),
        ("/tfleet/hostctl/h1", P(Section.HOSTCTL, host="h1")),
        ("/tfleet/schedules/resnet/promote-1", P(Section.SCHEDULES, model="resnet", schedule="promote-1")),
        ("/tfleet/leader", P(Section.LEADER)),
        ("/tfleet/routes/resnet", P(Section.ROUTES, model="resnet")),
        ("/tfleet/problems", P(Section.PROBLEMS)),
        # outside the prefix, or in no section of this version: read past, never acted upon
        ("/other/models/m", P(Section.FOREIGN)),
        ("/tfleetx/models/m", P(Section.FOREIGN)),
        ("", P(Section.FOREIGN)),
        ("/tfleet/newsection/x", P(Section.UNKNOWN)),
        ("/tfleet/models", P(Section.UNKNOWN)),
        ("/tfleet/leader/x", P(Section.UNKNOWN)),
        ("/tfleet/unknown/x", P(Section.UNKNOWN)),
    ],
)
def test_every_key_is_classified_as_documented(key: str, expected: ParsedKey) -> None:
    assert KS.classify(key) == expected
    if expected.ok:
        assert KS.build(expected) == key


@pytest.mark.parametrize(
    "key, section, fragment, kept",
    [
        ("/tfleet/models/", Section.MODELS, "empty", {}),
        ("/tfleet/models/a/b", Section.MODELS, "must have the form /tfleet/models/<model>", {}),
        ("/tfleet/hosts/bad name", Section.HOSTS, "not allowed", {}),
        ("/tfleet/assignments/h1", Section.ASSIGNMENTS, "<host>/<model>", {}),
        ("/tfleet/status/h1/a..b", Section.STATUS, "not allowed", {"host": "h1"}),
        ("/tfleet/versions/m/01", Section.VERSIONS, "leading zeros", {"model": "m"}),
        ("/tfleet/versions/m/\u00b2", Section.VERSIONS, "decimal digits", {"model": "m"}),
        ("/tfleet/versions/m/" + "9" * 20, Section.VERSIONS, "decimal digits", {"model": "m"}),
        ("/tfleet/history/m/42", Section.HISTORY, "12-digit", {"model": "m"}),
        ("/tfleet/history/-m/000000000042", Section.HISTORY, "not allowed", {"sequence": 42}),
        ("/tfleet/schedules/m/", Section.SCHEDULES, "schedule name is empty", {"model": "m"}),
    ],
)
def test_a_malformed_key_keeps_its_section_and_says_why(key: str, section: Section, fragment: str, kept: dict[str, object]) -> None:
    parsed = KS.classify(key)
    assert parsed.section is section and not parsed.ok
    assert parsed.error is not None and fragment in parsed.error
    assert {f: getattr(parsed, f) for f in ("host", "model", "version", "schedule", "sequence") if getattr(parsed, f) is not None} == kept
    with pytest.raises(InvalidName):
        KS.expect(key, section)


def test_helpers_are_built_on_classify() -> None:
    assert KS.parse_host_model("/tfleet/status/h1/m", "status") == ("h1", "m")
    assert KS.name_after("/tfleet/status/h1/m", KS.status_prefix("h1")) == "m"
    with pytest.raises(InvalidName, match="must have the form"):
        KS.name_after("/tfleet/status/h1/m", KS.status_prefix())
    with pytest.raises(InvalidName, match="not under"):
        KS.name_after("/tfleet/models/m", KS.routes_prefix())
    assert KS.section_of("/tfleet/newsection/x") == "unknown"
    with pytest.raises(InvalidName, match="not under"):
        KS.expect("/tfleet/models/m", Section.ROUTES)
    with pytest.raises(InvalidName):
        KS.build(P(Section.MODELS))
    with pytest.raises(InvalidName):
        KS.version("m", VERSION_MAX + 1)


def _built(ks: Keyspace) -> st.SearchStrategy[tuple[str, ParsedKey]]:
    """(key, description) for every key builder."""
    seqs = st.integers(0, HISTORY_SEQUENCE_MAX)
    versions = st.integers(0, VERSION_MAX)
    return st.one_of(
        names.map(lambda h: (ks.host(h), P(Section.HOSTS, host=h))),
        st.tuples(names, names).map(lambda t: (ks.assignment(*t), P(Section.ASSIGNMENTS, host=t[0], model=t[1]))),
        st.tuples(names, names).map(lambda t: (ks.status(*t), P(Section.STATUS, host=t[0], model=t[1]))),
        names.map(lambda m: (ks.model(m), P(Section.MODELS, model=m))),
        st.tuples(names, versions).map(lambda t: (ks.version(*t), P(Section.VERSIONS, model=t[0], version=t[1]))),
        st.tuples(names, seqs).map(lambda t: (ks.history(*t), P(Section.HISTORY, model=t[0], sequence=t[1]))),
        st.just((ks.history_cursor(), P(Section.HISTORYCURSOR))),
        names.map(lambda m: (ks.modelstatus(m), P(Section.MODELSTATUS, model=m))),
        names.map(lambda h: (ks.hostctl(h), P(Section.HOSTCTL, host=h))),
        st.tuples(names, names).map(lambda t: (ks.schedule(*t), P(Section.SCHEDULES, model=t[0], schedule=t[1]))),
        st.just((ks.leader(), P(Section.LEADER))),
        names.map(lambda m: (ks.routes(m), P(Section.ROUTES, model=m))),
        st.just((ks.problems(), P(Section.PROBLEMS))),
    )


@given(keyspaces.flatmap(lambda ks: st.tuples(st.just(ks), _built(ks))))
def test_classify_inverts_every_builder(case: tuple[Keyspace, tuple[str, ParsedKey]]) -> None:
    ks, (key, described) = case
    assert ks.classify(key) == described
    assert ks.build(described) == key
    if described.section not in (Section.LEADER, Section.HISTORYCURSOR, Section.PROBLEMS):
        assert key.startswith(ks.parent_prefix(described)) and ks.name_after(key, ks.parent_prefix(described)) == described.leaf


@given(st.one_of(st.text(), st.text().map(lambda t: "/tfleet/" + t), st.lists(st.sampled_from(["/", "models", "h", "..", "0", "01", "²", ""])).map("".join)))
def test_any_string_is_classified_without_raising(key: str) -> None:
    parsed = KS.classify(key)
    if parsed.ok:  # a key classify accepts is exactly the key its description builds
        assert KS.build(parsed) == key
    elif parsed.section not in (Section.FOREIGN, Section.UNKNOWN):
        assert parsed.error


@given(
    st.one_of(st.text(), st.text().map(lambda t: "/tfleet/" + t), st.sampled_from(["/tfleet/models", "/tfleet/models/", "/tfleet/leader", "/tfleet/leader/"]))
)
def test_the_cheap_section_tests_agree_with_classify(key: str) -> None:
    section = KS.classify(key).section
    assert KS.section(key) is section
    assert KS.section_of(key) == ("" if section is Section.FOREIGN else str(section))
    for candidate in Section:
        if candidate not in (Section.FOREIGN, Section.UNKNOWN):
            assert KS.in_section(key, candidate) == (section is candidate)


# Slicing or splitting a key by hand outside tfleet/keyspace.py: the shapes the parses had
# before classify took them over. A new one is a second parser of the contract.
_HAND_PARSES = re.compile(
    r"key\[len\(|key\.split\(\"/\"\)|key\.rsplit\(\"/\"|key\.partition\(\"/\"\)|_prefix\(\)\) ?:\]|rest\.partition\(\"/\"\)|tail\.partition\(\"/\"\)"
)
ROOT = Path(__file__).resolve().parents[2]


def test_no_module_but_the_keyspace_parses_keys_by_hand() -> None:
    offenders = []
    for directory in ("tfleet", "agent", "controller", "bench"):
        for path in sorted((ROOT / directory).rglob("*.py")):
            if path.name == "keyspace.py" or "pb" in path.parts:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if _HAND_PARSES.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "parse keys with Keyspace.classify:\n" + "\n".join(offenders)
