"""What the benchmarks share: the measured model, trained-looking batch
norm statistics, the process's peak memory, and writing a figure between
markers in bench/README.md. TensorFlow is imported only by the functions
that build or train a model, so a peer's worker (bench/compare.py) can
measure its own memory through this module."""

import pathlib
import resource

README = pathlib.Path(__file__).resolve().parent / "README.md"


def deeplab_v3_plus(backbone: str, **kwargs):
  """DeepLabv3+ as benchmarked: OS 16, 21 classes, separable ASPP (6, 12,
  18) + decoder, multi-grid (1, 2, 4) for ResNets; ``kwargs`` override."""
  from deeplab import model as model_lib  # pylint: disable=g-import-not-at-top
  kwargs.setdefault("multi_grid", (1, 2, 4) if backbone.startswith("resnet")
                    else (1, 1, 1))
  return model_lib.DeepLab(num_classes=21, backbone=backbone, **kwargs)


def randomize_batch_norm(model, rng):
  """``tests.harness.randomize_batch_norm``: random batch norm statistics."""
  from tests import harness  # pylint: disable=g-import-not-at-top
  return harness.randomize_batch_norm(model, rng)


def training_step(model, images, labels):
  """One SGD-with-momentum step of ``model`` on softmax cross-entropy over
  fixed ``images`` and ``labels``, as a no-argument function returning the
  loss as a number (traced once, on its first call)."""
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  optimizer = keras.optimizers.SGD(0.001, momentum=0.9)

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      logits = tf.cast(model(images, training=True), tf.float32)
      loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
          labels, logits))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return loss

  return lambda: float(step())


def cpu_model() -> str:
  """The CPU's model name and the cores this process may use."""
  import os  # pylint: disable=g-import-not-at-top
  name = "unknown CPU"
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          name = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  return f"{name}, {len(os.sched_getaffinity(0))} cores"


def peak_rss_gib() -> float:
  """This process's peak resident memory so far (``ru_maxrss``, KiB on
  Linux) in GiB."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def forward_flops(model, size: int) -> float:
  """FLOPs of one forward pass at batch 1 (multiply and add counted apart),
  by TensorFlow's profiler."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow.python.profiler import model_analyzer  # pylint: disable=g-import-not-at-top
  from tensorflow.python.profiler import option_builder  # pylint: disable=g-import-not-at-top
  forward = tf.function(lambda x: model(x, training=False))
  graph = forward.get_concrete_function(
      tf.TensorSpec([1, size, size, 3], tf.float32)).graph
  options = option_builder.ProfileOptionBuilder.float_operation()
  options["output"] = "none"
  return model_analyzer.profile(graph, options=options).total_float_ops


def _markers(name: str):
  return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def read_readme(name: str) -> str:
  """What stands between the ``name`` markers of bench/README.md ('' if
  they are absent)."""
  begin, end = _markers(name)
  readme = README.read_text()
  if begin not in readme:
    return ""
  return readme.split(begin)[1].split(end)[0].strip()


def write_readme(name: str, text: str):
  """Replaces what stands between ``<!-- name:begin -->`` and
  ``<!-- name:end -->`` in bench/README.md (appended if absent)."""
  begin, end = _markers(name)
  readme = README.read_text()
  if begin not in readme:
    readme += f"\n{begin}\n{end}\n"
  head, rest = readme.split(begin)
  _, tail = rest.split(end)
  README.write_text(f"{head}{begin}\n{text}\n{end}{tail}")


CPU_SECTION = "#### CPU: "


def cpu_heading() -> str:
  """``#### CPU: <model> (<ISA>), <n> cores`` of this machine: figures
  under it are never set beside another CPU's."""
  from deeplab import runtime  # pylint: disable=g-import-not-at-top
  cpu = runtime.this_cpu()
  return f"{CPU_SECTION}{cpu.model} ({cpu.isa()}), {cpu.cores} cores"


def write_cpu_section(name: str, text: str):
  """Puts ``text`` under this CPU's heading between the ``name`` markers
  of bench/README.md, replacing that CPU's previous section and keeping
  the other CPUs'."""
  heading = cpu_heading()
  sections, current = [], None
  for line in read_readme(name).splitlines():
    if line.startswith(CPU_SECTION):
      current = [line]
      sections.append(current)
    elif current is not None:
      current.append(line)
  kept = ["\n".join(lines).strip() for lines in sections if lines[0] != heading]
  write_readme(name, "\n\n".join(kept + [f"{heading}\n\n{text}"]))


def report(name: str, text: str, write: bool):
  """Prints a benchmark's figures and, if ``write``, puts them into
  bench/README.md between the ``name`` markers."""
  print(text)
  if write:
    write_readme(name, text)
