"""Pilot tests of the Setup pane in the real app: the list highlights the loaded preset, esc and typed keys
in a field, saving the fields as a preset file, and the equivalent command line.

No engine runs here: each app's bridge records the preset a run would start with instead of starting an
engine process (the rest of the app is the real one)."""

from __future__ import annotations

import asyncio
import shlex
import shutil

import pytest
from conftest import ROOT, make_preset
from textual.widgets import Input, OptionList, Static, TabbedContent

from basintui.config import load_preset
from basintui.tui.app import BasinApp
from basintui.tui.screens.save_preset import SavePresetScreen
from basintui.tui.widgets.setup import FieldRow, SetupPane

SIZE = (160, 50)


def recording_app(preset) -> tuple[BasinApp, list]:
    """The real app, whose bridge records each run's preset instead of starting an engine process."""
    app = BasinApp(preset)
    started: list = []
    app.bridge.prewarm = lambda: None
    app.bridge.start = lambda _app, p: started.append(p)
    return app, started


def pane(app) -> SetupPane:
    return app.screen_stack[0].query_one(SetupPane)


def options(app) -> OptionList:
    return app.screen_stack[0].query_one("#preset-list", OptionList)


def highlighted(app) -> str | None:
    opts = options(app)
    return None if opts.highlighted is None else str(opts.get_option_at_index(opts.highlighted).id)


def text(app, selector: str) -> str:
    return str(app.screen_stack[0].query_one(selector, Static).render())


def editor(app, key: str) -> Input:
    ed = app.screen_stack[0].query_one(f"#f-{key.replace('.', '-').replace('_', '-')}", FieldRow).editor
    assert isinstance(ed, Input)
    return ed


async def submit_path(pilot, value: str) -> None:
    field = pilot.app.screen_stack[0].query_one("#preset-path", Input)
    field.focus()
    field.value = value
    await pilot.press("enter")
    await pilot.pause()


def run(coro_fn, preset):
    async def main():
        app, started = recording_app(preset)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            await coro_fn(app, pilot, started)

    asyncio.run(main())


@pytest.mark.slow  # 4-9 s: in the slow set to keep the default suite within its target
def test_the_app_opens_with_its_builtin_preset_highlighted():
    async def body(app, pilot, started):
        assert highlighted(app) == "collapse"
        assert text(app, "#preset-loaded") == "Loaded: built-in collapse"
        assert text(app, "#preset-desc") == load_preset("collapse").description

    run(body, load_preset("collapse"))


@pytest.mark.slow  # a fast representative of the pane's behaviour stays in the default set
def test_a_preset_from_no_file_highlights_nothing():
    async def body(app, pilot, started):
        assert highlighted(app) is None
        assert "not from a preset file" in text(app, "#preset-loaded")

    run(body, make_preset(data={"n": 8}))


@pytest.mark.slow  # 5-9 s: in the slow set to keep the default suite within its target
def test_the_highlight_follows_loading_by_path(tmp_path):
    copy = tmp_path / "digits.toml"  # a built-in's name, but not the built-in
    shutil.copy(ROOT / "presets" / "xor-relu.toml", copy)

    async def body(app, pilot, started):
        await submit_path(pilot, str(copy))
        assert pane(app).current.name == "xor-relu" and highlighted(app) is None
        assert text(app, "#preset-loaded") == f"Loaded: {copy}"
        await submit_path(pilot, str(ROOT / "presets" / "deep-linear.toml"))
        assert highlighted(app) == "deep-linear" and pane(app).current.to_dict() == load_preset("deep-linear").to_dict()
        assert text(app, "#preset-loaded") == "Loaded: built-in deep-linear"
        await submit_path(pilot, "digits")  # a built-in by name
        assert highlighted(app) == "digits" and text(app, "#preset-loaded") == "Loaded: built-in digits"
        assert pane(app).command_text == "Equivalent command: basintui run digits"
        await submit_path(pilot, "no-such-preset")  # refused: the loaded preset and its highlight stay
        assert "no-such-preset" in text(app, "#path-msg") and highlighted(app) == "digits"

    run(body, load_preset("default"))


def test_selecting_in_the_list_loads_and_r_runs_the_fields_not_the_highlight():
    async def body(app, pilot, started):
        opts = options(app)
        opts.focus()
        await pilot.pause()
        ids = [str(opts.get_option_at_index(i).id) for i in range(opts.option_count)]
        await pilot.press("down")  # a preview only
        await pilot.pause()
        preview = ids[ids.index("default") + 1]
        assert highlighted(app) == preview
        assert text(app, "#preset-desc").startswith(f"Preview (enter loads it) of {preview}:")
        assert text(app, "#preset-loaded") == "Loaded: built-in default"
        await pilot.press("r")
        await pilot.pause()
        assert [p.name for p in started] == ["default"], "r runs what the fields show"
        app.action_show_tab("setup")
        opts.focus()
        opts.highlighted = ids.index("underparam")
        await pilot.press("enter")
        await pilot.pause()
        assert highlighted(app) == "underparam" and pane(app).current.name == "underparam"
        assert text(app, "#preset-loaded") == "Loaded: built-in underparam"
        await pilot.press("up")  # move away, then leave the list: the highlight returns to the loaded one
        editor(app, "train.lr").focus()
        await pilot.pause()
        assert highlighted(app) == "underparam"

    run(body, load_preset("default"))


@pytest.mark.slow  # 4-9 s: in the slow set to keep the default suite within its target
def test_esc_leaves_a_field_and_keeps_its_value():
    async def body(app, pilot, started):
        lr = editor(app, "train.lr")
        lr.focus()
        lr.value = ""
        await pilot.press("0", ".", "2")
        await pilot.press("escape")
        await pilot.pause()
        assert app.focused is options(app)
        assert lr.value == "0.2" and pane(app).current.train.lr == 0.2
        assert app.screen_stack[0].query_one(TabbedContent).active == "setup"
        assert text(app, "#preset-loaded") == "Loaded: built-in default · edited"

    run(body, load_preset("default"))


@pytest.mark.slow  # 5-9 s: in the slow set to keep the default suite within its target
def test_letters_and_digits_type_into_a_field():
    async def body(app, pilot, started):
        desc = editor(app, "description")
        desc.focus()
        desc.value = ""
        keys = ["1", "2", "q", "r", "c", "e", "x", "s", "0", "question_mark"]
        await pilot.press(*keys)
        await pilot.pause()
        assert desc.value == "12qrcexs0?"
        assert app.is_running and app.screen is app.screen_stack[0], "no dialog opened, nothing quit"
        assert app.screen_stack[0].query_one(TabbedContent).active == "setup"
        assert started == [] and app.focused is desc
        assert pane(app).current.description == "12qrcexs0?"

    run(body, load_preset("default"))


async def open_save(app, pilot) -> SavePresetScreen:
    options(app).focus()
    await pilot.press("s")
    await pilot.pause()
    assert isinstance(app.screen, SavePresetScreen)
    return app.screen


async def save_to(app, pilot, path) -> SavePresetScreen:
    screen = await open_save(app, pilot)
    screen.query_one(Input).value = str(path)
    await pilot.press("enter")
    await pilot.pause()
    return screen


@pytest.mark.slow  # 4-9 s: in the slow set to keep the default suite within its target
def test_save_writes_a_file_that_loads_back_equal(tmp_path):
    async def body(app, pilot, started):
        editor(app, "train.lr").value = "0.1"
        editor(app, "description").value = 'say "hi" \\ bye'
        editor(app, "model.hidden").value = "[3, 5]"
        await pilot.pause()
        screen = await open_save(app, pilot)
        assert screen.query_one(Input).value == "./default.toml"
        screen.query_one(Input).value = str(tmp_path / "mine.toml")
        await pilot.press("enter")
        await pilot.pause()
        assert not isinstance(app.screen, SavePresetScreen)
        back = load_preset(str(tmp_path / "mine.toml"))
        assert back.to_dict() == pane(app).current.to_dict()
        assert back.description == 'say "hi" \\ bye' and back.model.hidden == (3, 5) and back.train.lr == 0.1

    run(body, load_preset("default"))


@pytest.mark.slow  # a fast representative of the pane's behaviour stays in the default set
def test_overwriting_needs_confirmation(tmp_path):
    target = tmp_path / "p.toml"
    target.write_text("seed = 1\n")

    async def body(app, pilot, started):
        screen = await save_to(app, pilot, target)
        assert app.screen is screen and target.read_text() == "seed = 1\n"
        assert "exists" in str(screen.query_one("#save-msg", Static).render())
        await pilot.press("enter")  # the confirmation
        await pilot.pause()
        assert not isinstance(app.screen, SavePresetScreen)
        assert load_preset(str(target)).to_dict() == load_preset("default").to_dict()

    run(body, load_preset("default"))


@pytest.mark.slow  # a fast representative of the pane's behaviour stays in the default set
def test_a_bad_directory_is_reported_in_words(tmp_path):
    async def body(app, pilot, started):
        screen = await save_to(app, pilot, tmp_path / "missing" / "p.toml")
        assert app.screen is screen, "the dialog stays open to correct the path"
        msg = str(screen.query_one("#save-msg", Static).render())
        assert "does not exist" in msg and str(tmp_path / "missing") in msg and "Traceback" not in msg
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, SavePresetScreen) and not (tmp_path / "missing").exists()

    run(body, load_preset("default"))


@pytest.mark.slow  # a fast representative of the pane's behaviour stays in the default set
def test_saving_invalid_fields_is_refused():
    async def body(app, pilot, started):
        editor(app, "train.lr").value = "-1"
        await pilot.pause()
        options(app).focus()
        await pilot.press("s")
        await pilot.pause()
        assert not isinstance(app.screen, SavePresetScreen)
        assert app.focused is editor(app, "train.lr")

    run(body, load_preset("default"))


@pytest.mark.slow  # 5-9 s: in the slow set to keep the default suite within its target
def test_the_equivalent_command_follows_the_fields():
    async def body(app, pilot, started):
        setup = pane(app)
        assert setup.command_text == "Equivalent command: basintui run collapse"
        editor(app, "train.lr").value = "0.1"
        editor(app, "name").value = "it's mine"
        await pilot.pause()
        command = setup.command_text.removeprefix("Equivalent command: ")
        assert shlex.split(command) == ["basintui", "run", "collapse", "--set", "name=\"it's mine\"",
                                        "--set", "train.lr=0.1"]
        assert load_preset("collapse", shlex.split(command)[4::2]).to_dict() == setup.current.to_dict()
        editor(app, "train.lr").value = "fast"
        await pilot.pause()
        assert setup.command_text == "Equivalent command: none while field train.lr is invalid"
        editor(app, "train.lr").value = ""  # empty: the default, which --set cannot ask for
        editor(app, "data.n").value = ""
        await pilot.pause()
        assert "data.n is empty" in setup.command_text

    run(body, load_preset("collapse"))


@pytest.mark.slow  # a fast representative of the pane's behaviour stays in the default set
def test_esc_outside_a_field_is_left_to_the_app():
    """The pane's esc acts only in a text field: on the list the key goes on to the app's own binding."""
    async def body(app, pilot, started):
        options(app).focus()
        await pilot.pause()
        setup = pane(app)
        assert setup.check_action("leave_field", ()) is False
        editor(app, "seed").focus()
        await pilot.pause()
        assert setup.check_action("leave_field", ()) is True

    run(body, load_preset("default"))
