"""The keyspace is a public contract: these tests pin every key's exact shape."""

import pytest

from tfleet.keyspace import InvalidName, Keyspace, validate_name

KS = Keyspace()


def test_v1_keys_are_exactly_as_documented() -> None:
    assert KS.host("h1") == "/tfleet/hosts/h1"
    assert KS.hosts_prefix() == "/tfleet/hosts/"
    assert KS.assignment("h1", "resnet") == "/tfleet/assignments/h1/resnet"
    assert KS.assignments_prefix("h1") == "/tfleet/assignments/h1/"
    assert KS.assignments_prefix() == "/tfleet/assignments/"
    assert KS.status("h1", "resnet") == "/tfleet/status/h1/resnet"
    assert KS.status_prefix("h1") == "/tfleet/status/h1/"


def test_prefix_is_configurable() -> None:
    assert Keyspace("/prod/fleet").assignment("h", "m") == "/prod/fleet/assignments/h/m"


@pytest.mark.parametrize("prefix", ["tfleet", "/tfleet/", "/", "//x", "/a b"])
def test_bad_prefix_rejected(prefix: str) -> None:
    with pytest.raises(InvalidName, match="prefix"):
        Keyspace(prefix)


@pytest.mark.parametrize("name", ["h1", "gpu-01.dc1", "resnet_50", "A", "9"])
def test_good_names(name: str) -> None:
    assert validate_name("model", name) == name


@pytest.mark.parametrize(
    "name, fragment",
    [("", "empty"), ("a/b", "not allowed"), ("-x", "not allowed"), ("a..b", "not allowed"), ("x" * 129, "limit is 128"), ("ü", "not allowed")],
)
def test_bad_names_explained(name: str, fragment: str) -> None:
    with pytest.raises(InvalidName, match=fragment):
        validate_name("model", name)


def test_parse_assignment_key() -> None:
    assert KS.model_of_assignment("/tfleet/assignments/h1/resnet", "h1") == "resnet"
    with pytest.raises(InvalidName, match="must have the form"):
        KS.model_of_assignment("/tfleet/assignments/h1/a/b", "h1")
    with pytest.raises(InvalidName, match="belongs to host"):
        KS.model_of_assignment("/tfleet/assignments/h2/resnet", "h1")
    with pytest.raises(InvalidName):
        KS.model_of_assignment("/tfleet/assignments/h1/bad name", "h1")


def test_controller_keys_are_exactly_as_documented() -> None:
    assert KS.model("resnet") == "/tfleet/models/resnet"
    assert KS.version("resnet", 3) == "/tfleet/versions/resnet/3"
    assert KS.history("resnet", 12) == "/tfleet/history/resnet/000000000012"
    assert KS.modelstatus("resnet") == "/tfleet/modelstatus/resnet"
    assert KS.hostctl("h1") == "/tfleet/hostctl/h1"
    assert KS.schedule("resnet", "promote-1") == "/tfleet/schedules/resnet/promote-1"
    assert KS.leader() == "/tfleet/leader"


def test_history_keys_sort_in_order_of_change() -> None:
    keys = [KS.history("m", n) for n in (2, 10, 1, 100)]
    assert sorted(keys) == [KS.history("m", n) for n in (1, 2, 10, 100)]


def test_history_cursor_and_ranges_are_exactly_as_documented() -> None:
    assert KS.history_cursor() == "/tfleet/historycursor"
    assert KS.history_range("m") == ("/tfleet/history/m/0", "/tfleet/history/m/:")
    assert KS.history_range("m", None, 57) == ("/tfleet/history/m/0", "/tfleet/history/m/000000000057")
    start, end = KS.history_range("m")
    # every sequence key falls in the range; a stray key and another model's keys do not
    assert start <= KS.history("m", 0) < KS.history("m", 999_999_999_999) < end
    assert not start <= "/tfleet/history/m/notes" < end
    assert not start <= KS.history("m-b", 1) < end and not start <= KS.history("m.b", 1) < end
    assert KS.history_sequence(KS.history("m", 42), "m") == 42
    for bad in ("/tfleet/history/m/42", "/tfleet/history/m/00000000004x", "/tfleet/history/other/000000000042"):
        with pytest.raises(InvalidName):
            KS.history_sequence(bad, "m")
    with pytest.raises(InvalidName):
        KS.history("m", 10**12)


def test_name_after_section() -> None:
    assert KS.name_after("/tfleet/models/resnet", KS.models_prefix()) == "resnet"
    with pytest.raises(InvalidName):
        KS.name_after("/tfleet/models/a/b", KS.models_prefix())
