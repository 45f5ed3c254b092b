"""The command-line tools, one module each: flags, then one library call.

Each module's ``main()`` defines its flags when called (never at import)
and is a console script (``deeplab-train``, ``deeplab-eval``,
``deeplab-export``); the repository's ``train.py``, ``eval.py`` and
``export.py`` call the same functions.
"""
