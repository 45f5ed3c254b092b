"""The command-line tools, one module each: flags, then one library call.

Each module's ``main()`` defines its flags when called (never at import).
The console scripts (``deeplab-train``, ``deeplab-eval``,
``deeplab-export``) and the repository's ``train.py``, ``eval.py`` and
``export.py`` run it through ``deeplab.runtime.launch``, which chooses
TensorFlow's runtime for the tool's job before importing the module.
"""
