"""The plugin system: real entry-point discovery, provenance, did-you-mean, duplicates, check_pending."""

import subprocess
import sys
import textwrap

import pytest

from chainforget.errors import DuplicateNameError, PluginError, UnknownNameError
from chainforget.plugins import manager
from chainforget.plugins.registry import Registry


def make_distribution(root, dist, module, body):
    """A real installed-looking distribution on sys.path: dist-info with an entry point in group chainforget."""
    (root / f"{module}.py").write_text(textwrap.dedent(body))
    info = root / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[chainforget]\n{module} = {module}\n")


@pytest.fixture()
def plugin_path(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    manager.reset()
    yield tmp_path
    manager.reset()
    for name in [m for m in sys.modules if m.startswith("cfplug_")]:
        del sys.modules[name]


def test_entry_point_plugin_is_discovered_with_its_distribution(plugin_path):
    make_distribution(plugin_path, "cf-demo-plugin", "cfplug_demo", """
        from chainforget.plugins import hookimpl

        class Thing:
            "A demo strategy from a third-party package."

        @hookimpl
        def chainforget_register_strategies(registry):
            registry.register("demo-strategy", Thing())
    """)
    entry = manager.registries("strategies").entry("demo-strategy")
    assert entry.source == "cf-demo-plugin 0.1"
    assert entry.description == "A demo strategy from a third-party package."
    # built-ins came through the same hook, credited to chainforget
    assert manager.registries("models").entry("tiny").source == "chainforget"


def test_misspelled_hook_fails_at_load_time(plugin_path):
    make_distribution(plugin_path, "cf-typo-plugin", "cfplug_typo", """
        from chainforget.plugins import hookimpl

        @hookimpl
        def chainforget_register_taks(registry):
            pass
    """)
    with pytest.raises(PluginError, match="chainforget_register_taks"):
        manager.get_plugin_manager()


def test_unmarked_hook_function_warns_at_its_definition(plugin_path):
    make_distribution(plugin_path, "cf-unmarked-plugin", "cfplug_unmarked", """
        from chainforget.plugins import hookimpl

        def chainforget_register_strategies(registry):  # forgot @hookimpl
            registry.register("never-seen", object(), "x")

        def chainforget_register_taks(registry):  # forgot @hookimpl, and misspelled
            pass

        @hookimpl
        def chainforget_register_metrics(registry):
            pass

        def helper(registry):
            pass
    """)
    with pytest.warns(manager.PluginWarning) as caught:
        manager.get_plugin_manager()
    messages = {str(w.message) for w in caught}
    assert messages == {
        "cfplug_unmarked.chainforget_register_strategies is not marked @hookimpl, so chainforget never calls it; "
        "decorate it with @chainforget.plugins.hookimpl",
        "cfplug_unmarked.chainforget_register_taks is not marked @hookimpl, so chainforget never calls it; "
        "decorate it with @chainforget.plugins.hookimpl and rename it: 'chainforget_register_taks' is no chainforget "
        "hook; did you mean 'chainforget_register_tasks'? hooks: chainforget_register_launchers, "
        "chainforget_register_metrics, chainforget_register_models, chainforget_register_presets, "
        "chainforget_register_strategies, chainforget_register_tasks"}
    first = next(w for w in caught if "strategies" in str(w.message))
    assert first.filename.endswith("cfplug_unmarked.py") and first.lineno == 4  # points at the def
    assert "never-seen" not in manager.registries("strategies")


def test_marked_plugins_give_no_warning(plugin_path):
    import warnings

    make_distribution(plugin_path, "cf-clean-plugin", "cfplug_clean", """
        from chainforget.plugins import hookimpl
        from chainforget.plugins.hookspecs import chainforget_register_models  # a spec, not an implementation

        @hookimpl
        def chainforget_register_strategies(registry):
            pass
    """)
    with warnings.catch_warnings():
        warnings.simplefilter("error", manager.PluginWarning)
        manager.get_plugin_manager()  # the built-ins and this plugin: every hook function is marked


def test_hook_asking_for_a_finished_registry_is_one_line_error(plugin_path):
    make_distribution(plugin_path, "cf-eager-plugin", "cfplug_eager", """
        from chainforget.plugins import hookimpl, registries

        @hookimpl
        def chainforget_register_tasks(registry):
            registries("tasks").get("bbq")
    """)
    with pytest.raises(PluginError, match="^a chainforget_register_tasks hook asked for the finished tasks registry, "
                                          "which is still being built; use the registry the hook receives"):
        manager.registries("tasks")


def test_broken_plugin_import_is_one_line_error(plugin_path):
    make_distribution(plugin_path, "cf-broken-plugin", "cfplug_broken", "raise ImportError('no numpy here')\n")
    with pytest.raises(PluginError, match="could not load a 'chainforget' entry-point plugin.*no numpy here"):
        manager.get_plugin_manager()


def test_duplicate_name_names_both_sources(plugin_path):
    make_distribution(plugin_path, "cf-dup-plugin", "cfplug_dup", """
        from chainforget.plugins import hookimpl

        @hookimpl
        def chainforget_register_models(registry):
            registry.register("tiny", object(), "an impostor")
    """)
    with pytest.raises(DuplicateNameError, match="'tiny' is registered twice: by chainforget and by cf-dup-plugin 0.1"):
        manager.registries("models")


def test_did_you_mean():
    reg = Registry("strategy")
    for name in ("naive", "replay", "ewc"):
        reg.register(name, object(), "x", source="here")
    with pytest.raises(UnknownNameError) as err:
        reg.get("replya")
    assert "unknown strategy 'replya'; did you mean 'replay'?" in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(UnknownNameError, match="known strategies: ewc, naive, replay") as err:
        reg.get("zzzzzz")
    assert "did you mean" not in str(err.value)


def test_cli_unknown_name_exit_2_no_traceback():
    out = subprocess.run([sys.executable, "-m", "chainforget", "list", "modles"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr


def test_help_and_list_do_not_import_heavy_libraries():
    code = ("import sys; from click.testing import CliRunner; from chainforget.cli import main\n"
            "r = CliRunner().invoke(main, ['--help']); assert r.exit_code == 0, r.output\n"
            "r = CliRunner().invoke(main, ['list', 'models']); assert r.exit_code == 0, r.output\n"
            "r = CliRunner().invoke(main, ['list', 'strategies', '--verbose']); assert r.exit_code == 0, r.output\n"
            "heavy = [m for m in ('torch', 'transformers', 'avalanche', 'peft', 'accelerate') if m in sys.modules]\n"
            "print(heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_version_and_list_output():
    from click.testing import CliRunner

    from chainforget import __version__
    from chainforget.cli import main

    r = CliRunner().invoke(main, ["--version"])
    assert r.exit_code == 0 and __version__ in r.output
    r = CliRunner().invoke(main, ["list", "models"])
    assert r.exit_code == 0
    lines = r.output.splitlines()
    assert lines[0].startswith("models (")
    assert "name" in lines[1] and "description" in lines[1] and "provided by" in lines[1]
    assert any(line.startswith("smollm2-135m") and "chainforget" in line for line in lines)
    assert any(line.startswith("tiny") for line in lines)
