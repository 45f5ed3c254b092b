"""The shape of the code: one definition of the model's arguments, imports
that point downward, flags only in the tools of one table, no shadowed
Keras names."""

import ast
import configparser
import dataclasses
import importlib
import pathlib
import subprocess
import sys

import keras
import pytest

from deeplab import cli
from deeplab import config as config_lib
from deeplab import model as model_lib
from deeplab import runtime
from deeplab.model_args import ArgumentError
from deeplab.model_args import ModelArgs
from tests.conftest import REPO

LIBRARY = sorted(p for p in (REPO / "deeplab").rglob("*.py"))
DATASETS = sorted((REPO / "datasets").glob("*.py"))
# What evaluation, export and prediction use: none may reach training code.
# (The graph is of module-level imports; a function-level import of training
# code would escape it, and none exists.)
INFERENCE_MODULES = ["deeplab.evaluation", "deeplab.export", "deeplab.predict",
                     "deeplab.convert", "deeplab.folding", "deeplab.run_dir",
                     "deeplab.cli.common", "deeplab.cli.eval", "deeplab.cli.export",
                     "deeplab.cli.predict", "deeplab.cli.convert",
                     "deeplab.inference", "deeplab.metrics", "deeplab.weights",
                     "deeplab.data.image_files", "deeplab.tasks.segmentation",
                     "deeplab.tasks.classification"]


def module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(REPO).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level_imports(path: pathlib.Path):
  """deeplab.* (and dataset builder) modules imported when ``path`` is
  imported (not in functions)."""
  names = set()
  for node in ast.parse(path.read_text()).body:
    if isinstance(node, ast.ImportFrom) and node.module and \
        node.module.startswith("deeplab"):
      for alias in node.names:
        candidate = f"{node.module}.{alias.name}"
        names.add(candidate if (REPO / candidate.replace(".", "/")).with_suffix(
            ".py").exists() or (REPO / candidate.replace(".", "/")).is_dir()
                  else node.module)
    elif isinstance(node, ast.ImportFrom) and node.module and \
        node.module.split(".")[0] == "datasets":
      names.add(node.module)
    elif isinstance(node, ast.Import):
      names.update(a.name for a in node.names if a.name.startswith("deeplab")
                   or a.name.split(".")[0] == "datasets")
  return names


def import_graph():
  return {module_name(p): top_level_imports(p) - {module_name(p)}
          for p in LIBRARY}


def test_the_library_has_no_import_cycle():
  graph = import_graph()
  state = {}

  def visit(node, path):
    if state.get(node) == "done":
      return
    assert state.get(node) != "open", f"import cycle: {' -> '.join(path + [node])}"
    state[node] = "open"
    for child in sorted(graph.get(node, ())):
      if child != "deeplab":  # The package's __init__ imports its leaves.
        visit(child, path + [node])
    state[node] = "done"

  for name in sorted(graph):
    visit(name, [])


# What inference must not load: training code and the dataset builders.
NOT_FOR_INFERENCE = ("deeplab.training", "deeplab.data.builder",
                     "deeplab_datasets", "datasets")


@pytest.mark.parametrize("name", INFERENCE_MODULES)
def test_inference_code_reaches_neither_training_code_nor_builders(name):
  graph = import_graph()
  seen, todo = set(), [name]
  while todo:
    node = todo.pop()
    if node in seen:
      continue
    seen.add(node)
    todo.extend(graph.get(node, ()))
  assert not [n for n in seen if n.split(".")[0] == "datasets" or any(
      n == prefix or n.startswith(prefix + ".") for prefix in NOT_FOR_INFERENCE)], sorted(seen)


# Where code may read the task's name: the task registry, and the model's
# arguments, whose task field says which fields a model uses and which
# model class they describe (ModelArgs.uses, ModelFromArgs).
TASK_NAME_READERS = {"deeplab.tasks", "deeplab.model_args"}


def _reads_the_task_name(path: pathlib.Path) -> bool:
  """Whether the module reads ``config.model.task`` or compares a ``.task``."""
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Attribute) and ast.unparse(node).endswith(
        "config.model.task"):
      return True
    if isinstance(node, ast.Compare) and any(
        isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops) and any(
            isinstance(side, ast.Attribute) and side.attr == "task"
            for side in [node.left, *node.comparators]):
      return True
  return False


def test_the_task_is_looked_up_in_one_place():
  readers = {module_name(p) for p in LIBRARY if _reads_the_task_name(p)}
  assert readers <= TASK_NAME_READERS, (
      f"{sorted(readers - TASK_NAME_READERS)} branch on the task's name: ask "
      "the task instead (deeplab.tasks.make_task)")
  assert "deeplab.tasks" in readers


def test_no_module_defines_flags_when_imported():
  names = [module_name(p) for p in LIBRARY] + [
      f"deeplab_datasets.{p.stem}" for p in DATASETS if p.stem != "__init__"]
  script = (
      "import importlib\n"
      "from absl import flags\n"
      f"for name in {names!r}:\n"
      "  importlib.import_module(name)\n"
      "print(sorted(m for m in flags.FLAGS.flags_by_module_dict()\n"
      "             if 'deeplab' in m))\n")
  result = subprocess.run([sys.executable, "-c", script], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip().splitlines()[-1] == "[]"


def _flag_definitions(path: pathlib.Path):
  """``flags.DEFINE_*(...)`` / ``config_flags.DEFINE_*(...)`` calls in a file."""
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Call):
      name = (node.func.attr if isinstance(node.func, ast.Attribute) else
              getattr(node.func, "id", ""))
      if name.startswith("DEFINE"):
        yield f"{path.relative_to(REPO)}:{node.lineno} {ast.unparse(node.func)}"


def test_flags_are_defined_only_in_the_cli_package():
  cli_package = REPO / "deeplab" / "cli"
  outside = [p for p in LIBRARY if cli_package not in p.parents] + DATASETS + sorted(
      (REPO / "configs").glob("*.py"))
  assert not [d for p in outside for d in _flag_definitions(p)]
  # The check sees the definitions where they are.
  assert list(_flag_definitions(cli_package / "train.py"))


def _console_scripts():
  parser = configparser.ConfigParser()
  parser.read(REPO / "setup.cfg")
  return [line.strip() for line in
          parser["options.entry_points"]["console_scripts"].strip().splitlines()]


def test_the_table_of_tools_is_setup_cfgs_console_scripts():
  assert _console_scripts() == [f"{t.script} = deeplab.cli:{t.entry_point}"
                                for t in cli.TOOLS]
  for tool in cli.TOOLS:
    assert getattr(cli, tool.entry_point) is tool
    assert cli.tool(tool.name) is cli.tool(tool.script) is tool
  assert not hasattr(cli, "deeplab_nothing")
  with pytest.raises(KeyError, match="tools: train, eval"):
    cli.tool("nothing")


def test_every_tool_is_a_module_of_the_cli_package_with_a_runtime_job():
  modules = {p.stem for p in (REPO / "deeplab" / "cli").glob("*.py")}
  for tool in cli.TOOLS:
    assert tool.script.startswith(cli.SCRIPT_PREFIX), tool
    assert tool.job in runtime.JOBS, tool
    tree = ast.parse((REPO / "deeplab" / "cli" / f"{tool.module}.py").read_text())
    assert ast.get_docstring(tree), f"{tool.module}: its docstring is its --help"
    (main,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main"]
    assert not main.args.args, tool
  # Every module with a main() is a tool of the table; the others help them.
  tools = {t.module for t in cli.TOOLS}
  assert modules - tools == {"__init__", "__main__", "common", "builder_flags"}
  assert len(tools) == len(cli.TOOLS) == len({t.script for t in cli.TOOLS})
  # The jobs whose runtime differs (deeplab/runtime.py's rules) are these tools'.
  assert {t.module: t.job for t in cli.TOOLS if t.job != "tool"} == {
      "train": "train", "eval": "eval", "export": "export", "predict": "predict"}


def test_python_m_deeplab_cli_names_the_tools():
  result = subprocess.run([sys.executable, "-m", "deeplab.cli", "nothing"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
  assert result.returncode == 1
  assert f"tools: {', '.join(t.name for t in cli.TOOLS)}" in result.stderr


def test_no_layer_of_ours_shadows_a_keras_name():
  for path in LIBRARY:
    module = importlib.import_module(module_name(path))
    for value in vars(module).values():
      if (isinstance(value, type) and issubclass(value, keras.layers.Layer)
          and value.__module__ == module.__name__):
        assert not hasattr(keras.layers, value.__name__), value


def test_the_config_model_section_is_derived_from_model_args():
  config = config_lib.base_config()
  fields = ModelArgs.config_fields()
  assert {f.name for f in fields if ModelArgs.config_key(f.name).startswith(
      "model.")} | {"backbone_weights"} == set(config.model.keys())
  for field in fields:
    section, name = ModelArgs.config_key(field.name).split(".")
    assert config[section][name] == field.default
  args = ModelArgs.from_experiment(config)
  assert args == ModelArgs()


def test_model_config_round_trip_goes_through_model_args():
  model = model_lib.DeepLab(num_classes=4, backbone="mobilenet_v2",
                            depth_multiplier=0.25, atrous_rates=(2,),
                            aspp_filters=16, decoder_filters=16)
  config = model.get_config()
  assert set(config) == {f.name for f in dataclasses.fields(ModelArgs)} | {
      "name", "trainable"}
  rebuilt = model_lib.DeepLab.from_config(config)
  assert rebuilt.args == model.args and rebuilt.name == model.name


def test_weight_signature_says_what_changes_the_weights():
  base = ModelArgs(backbone="resnet_50", multi_grid=(1, 2, 4))
  assert not base.differences(base.replace(output_stride=8,
                                           atrous_rates=(12, 24, 36)))
  assert not base.differences(base.replace(dropout_rate=0.5,
                                           dtype_policy="mixed_bfloat16"))
  assert set(base.differences(base.replace(atrous_rates=(6, 12)))) == {
      "atrous_rates"}
  # One ResNet unit per multi-grid entry: the count changes the weights.
  assert set(base.differences(base.replace(multi_grid=(1, 2)))) == {"multi_grid"}
  assert set(base.differences(base.replace(num_classes=3, use_decoder=False))) \
      == {"num_classes", "use_decoder"}


@pytest.mark.parametrize("changes, key", [
    (dict(dropout_rate="0.1"), "config.model.dropout_rate must be in [0, 1)"),
    (dict(num_classes=True), "config.dataset.num_classes must be an integer"),
    (dict(input_shape=(1, 2)), "input_shape must be (height, width, 3)"),
])
def test_model_args_errors_name_the_config_key(changes, key):
  with pytest.raises(ArgumentError) as error:
    ModelArgs(**changes)
  assert key in str(error.value)


def _assignments(path):
  """(key, value) of ``config.a.b = <literal>`` lines of a config file."""
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
      target = ast.unparse(node.targets[0])
      if target.startswith("config.") and target.count(".") == 2:
        try:
          yield target[len("config."):], ast.literal_eval(node.value)
        except ValueError:
          continue


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("[!_]*.py")),
                         ids=lambda p: p.stem)
def test_configs_set_only_what_differs_from_the_defaults(path):
  if "config_lib.base_config()" not in path.read_text():
    pytest.skip(f"{path.name} starts from another experiment's config")
  defaults = dict(config_lib.leaves(config_lib.base_config()))
  restated = [key for key, value in _assignments(path)
              if defaults[key] == value]
  assert not restated, f"{path.name} restates defaults: {restated}"


def test_the_benchmarks_examples_hold():
  """The examples in the docstrings of bench/compare.py (how rows of two
  CPUs merge, which reduced-precision rows count), run by doctest in a
  process of their own (no test imports bench/)."""
  result = subprocess.run([sys.executable, "-m", "doctest", "bench/compare.py"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
