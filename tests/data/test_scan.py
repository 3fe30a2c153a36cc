"""SCAN: the grammar's 20,910 commands, the paper's interpretations, the splits' sizes."""

import collections

import pytest

from rnnlab.data import scan

# Examples from Lake & Baroni (2018), interpreted by hand from the paper's rules.
PAPER_EXAMPLES = {
    "jump": "I_JUMP",
    "jump left": "I_TURN_LEFT I_JUMP",
    "jump around right": " ".join(["I_TURN_RIGHT I_JUMP"] * 4),
    "turn left twice": "I_TURN_LEFT I_TURN_LEFT",
    "jump thrice": "I_JUMP I_JUMP I_JUMP",
    "jump opposite left and walk thrice": "I_TURN_LEFT I_TURN_LEFT I_JUMP I_WALK I_WALK I_WALK",
    "jump opposite left after walk around left": (
        "I_TURN_LEFT I_WALK I_TURN_LEFT I_WALK I_TURN_LEFT I_WALK I_TURN_LEFT I_WALK "
        "I_TURN_LEFT I_TURN_LEFT I_JUMP"
    ),
    "turn opposite right": "I_TURN_RIGHT I_TURN_RIGHT",
    "turn around left": "I_TURN_LEFT I_TURN_LEFT I_TURN_LEFT I_TURN_LEFT",
    "walk opposite right twice after look": (
        "I_LOOK I_TURN_RIGHT I_TURN_RIGHT I_WALK I_TURN_RIGHT I_TURN_RIGHT I_WALK"
    ),
}


@pytest.fixture(scope="module")
def data():
    return scan.dataset()


def test_grammar_gives_20910_unique_commands_with_outputs_up_to_48_actions(data):
    commands = [c for c, _ in data]
    assert len(commands) == len(set(commands)) == scan.NUM_COMMANDS == 20_910
    lengths = [len(a.split()) for _, a in data]
    assert min(lengths) == 1 and max(lengths) == scan.MAX_ACTIONS == 48
    assert 23 not in lengths  # why the length split's train (<= 22) and test (>= 24) cover all
    assert {w for c in commands for w in c.split()} == {
        *("walk", "look", "run", "jump", "turn", "left", "right", "opposite", "around"),
        *("twice", "thrice", "and", "after"),
    }


@pytest.mark.parametrize("command", sorted(PAPER_EXAMPLES))
def test_paper_examples_are_interpreted_correctly(command, data):
    assert scan.interpret(command) == PAPER_EXAMPLES[command]
    assert (command, PAPER_EXAMPLES[command]) in set(data)


def test_conjunctions_compose_the_sentences_meanings(data):
    # An independent check of [[x1 and x2]] = [[x1]] [[x2]], [[x1 after x2]] = [[x2]] [[x1]].
    meaning = {c: a for c, a in data if " and " not in c and " after " not in c}
    assert len(meaning) == 102
    for command, actions in data[::97]:
        for conj, flip in ((" and ", False), (" after ", True)):
            if conj in command:
                first, second = command.split(conj)
                parts = (
                    [meaning[second], meaning[first]] if flip else [meaning[first], meaning[second]]
                )
                assert actions == " ".join(parts)


def test_bad_commands_are_rejected():
    for bad in ("fly", "walk sideways", "turn", "walk opposite around left"):
        with pytest.raises(ValueError):
            scan.interpret(bad)


@pytest.mark.parametrize(
    "name, train, test",
    [
        ("simple", 16_728, 4_182),
        ("length", 16_990, 3_920),
        ("addprim_jump", 13_204, 7_706),  # the paper's file: 14,670 (1,467 "jump" lines)
        ("addprim_turn_left", 19_702, 1_208),  # the paper's file: 21,890 (2,189 "turn left")
    ],
)
def test_split_sizes_match_the_paper(name, train, test):
    parts = scan.split(name)
    assert (len(parts["train"]), len(parts["test"])) == (train, test)
    assert parts == scan.split(name)  # deterministic


def test_simple_split_is_a_seeded_partition(data):
    a, b, c = (
        scan.split("simple", seed=0),
        scan.split("simple", seed=0),
        scan.split("simple", seed=1),
    )
    assert a == b and a["test"] != c["test"]
    assert sorted(a["train"] + a["test"]) == sorted(data)


def test_length_split_cuts_at_22_and_24_actions(data):
    parts = scan.split("length")
    assert max(len(a.split()) for _, a in parts["train"]) == 22
    assert min(len(a.split()) for _, a in parts["test"]) == 24
    assert sorted(parts["train"] + parts["test"]) == sorted(data)


@pytest.mark.parametrize(
    "name, primitive", [("addprim_jump", "jump"), ("addprim_turn_left", "turn left")]
)
def test_add_primitive_holds_out_every_composition_of_the_primitive(name, primitive, data):
    parts = scan.split(name)
    has = lambda c: f" {primitive} " in f" {c} "  # noqa: E731
    assert [c for c, _ in parts["train"] if has(c)] == [primitive]
    assert all(has(c) for c, _ in parts["test"])
    assert sorted(parts["train"] + parts["test"]) == sorted(data)
    if primitive == "turn left":  # "turn opposite left" is not "turn left": it stays in train
        assert ("turn opposite left", "I_TURN_LEFT I_TURN_LEFT") in parts["train"]


def test_primitive_copies_reproduce_the_published_file_sizes():
    jump = scan.split("addprim_jump", primitive_copies=1467)
    assert len(jump["train"]) == 14_670 and len(jump["test"]) == 7_706
    left = scan.split("addprim_turn_left", primitive_copies=2189)
    assert len(left["train"]) == 21_890 and len(left["test"]) == 1_208
    assert collections.Counter(c for c, _ in left["train"])["turn left"] == 2189


def test_cli_writes_the_published_line_format(tmp_path, capsys):
    scan.main(["--split=length", f"--out={tmp_path}"])
    assert "3920 lines" in capsys.readouterr().out
    lines = (tmp_path / "test.txt").read_text().splitlines()
    assert len(lines) == 3_920 and len((tmp_path / "train.txt").read_text().splitlines()) == 16_990
    assert all(line.startswith("IN: ") and " OUT: " in line for line in lines)
    assert [scan.parse_line(line) for line in lines] == scan.split("length")["test"]
    assert (
        scan.format_line(("jump left", "I_TURN_LEFT I_JUMP"))
        == "IN: jump left OUT: I_TURN_LEFT I_JUMP"
    )
